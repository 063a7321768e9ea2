"""Batches of whole dialogues, padded, with a mask. The store's arrays are moved to the device once
for the whole run; a batch is a gather by an index matrix built on the host."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from maln.data.store import Store

IGNORE = -100  # label on padding; every loss ignores it
LENGTH_JITTER = 0.25  # bucketing: sort by length x U(1 - j, 1 + j), so batches vary between epochs
# Evaluation batches: fewer, larger ones made an evaluation pass of the synthetic study's full model
# 1.5x faster (8 -> 32 dialogues: 40 -> 26 ms on synthetic-iemocap-interaction's validation split).
# Up to EVAL_DIALOGUES dialogues, and at most EVAL_GROWTH times the training batch: evaluation keeps no
# activations for a backward pass, but a training batch made small to fit the device's memory must
# not become a 32 times larger evaluation batch.
EVAL_DIALOGUES = 32
EVAL_GROWTH = 4


@dataclass
class Batch:
    dialogues: np.ndarray  # store indices of the batch's dialogues
    features: dict  # modality -> [B, T, d], zero on padding
    speakers: torch.Tensor  # [B, T], -1 on padding
    labels: torch.Tensor  # [B, T], IGNORE on padding
    mask: torch.Tensor  # [B, T] bool, True on real utterances
    lengths: torch.Tensor  # [B] int64 on the CPU (what pack_padded_sequence wants)
    rows: torch.Tensor  # [B, T]: each position's utterance in store order, 0 on padding

    @property
    def n_utterances(self) -> int:
        return int(self.lengths.sum())


class DeviceData:
    """The modalities a model uses, plus speakers and labels, resident on `device`."""

    def __init__(self, store: Store, modalities, device: torch.device):
        self.device = device
        self.offsets = store.offsets
        self.lengths = store.lengths()
        # np.array copies out of the read-only memory map (torch wants writable memory)
        self.features = {m: torch.from_numpy(np.array(store.features[m], dtype=np.float32)).to(device) for m in modalities}
        self.speakers = torch.from_numpy(np.array(store.speakers)).to(device)
        self.labels = torch.from_numpy(np.array(store.labels)).to(device)

    def batch(self, dialogues: np.ndarray) -> Batch:
        lengths = self.lengths[dialogues]
        steps = np.arange(lengths.max())
        mask_np = steps[None, :] < lengths[:, None]
        rows_np = np.where(mask_np, self.offsets[dialogues][:, None] + steps[None, :], 0)
        rows = torch.from_numpy(rows_np).to(self.device, non_blocking=True)
        mask = torch.from_numpy(mask_np).to(self.device, non_blocking=True)
        return Batch(
            dialogues=dialogues,
            features={m: f[rows] * mask[..., None] for m, f in self.features.items()},
            speakers=torch.where(mask, self.speakers[rows], -1),
            labels=torch.where(mask, self.labels[rows], IGNORE),
            mask=mask,
            lengths=torch.from_numpy(lengths.astype(np.int64)),
            rows=rows,
        )

    def training_batches(self, dialogues: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
        """Length-bucketed batches: dialogues of similar length go together (less padding), with
        jitter so the grouping changes every epoch, and the batches in random order."""
        noisy = self.lengths[dialogues] * rng.uniform(1 - LENGTH_JITTER, 1 + LENGTH_JITTER, size=len(dialogues))
        order = dialogues[np.argsort(noisy, kind="stable")]
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def eval_batches(self, dialogues: np.ndarray, batch_size: int) -> list:
        """Batches sorted by length (least padding), each of at most eval_batch_size(batch_size) dialogues."""
        batch_size = eval_batch_size(batch_size)
        order = dialogues[np.argsort(self.lengths[dialogues], kind="stable")]
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def eval_batch_size(batch_size: int) -> int:
    """Dialogues per evaluation batch for a training batch of `batch_size` (EVAL_DIALOGUES above)."""
    return max(batch_size, min(EVAL_DIALOGUES, EVAL_GROWTH * batch_size))
