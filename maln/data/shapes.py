"""What every synthetic generator shares with the real benchmarks: class priors, MELD's party counts
and speaker slots, the check that a registry entry sizes every modality of its layout, and which
generator (kind) an entry names."""

from __future__ import annotations

import numpy as np

from maln.errors import ConfigError

# class priors shaped like the real benchmarks (data-sources.md): IEMOCAP's hap smallest, MELD's
# neutral about 47 %, fear and disgust about 2-3 % each
PRIORS = {
    "conv-emotion-iemocap": np.array([0.08, 0.14, 0.22, 0.15, 0.15, 0.26]),
    "conv-emotion-meld": np.array([0.47, 0.12, 0.03, 0.07, 0.17, 0.03, 0.11]),
}
MELD_PARTIES = np.array([0.04, 0.40, 0.24, 0.14, 0.08, 0.05, 0.02, 0.02, 0.01])  # 1..9 parties
MELD_SLOTS = 9  # one-hot speaker vectors of length 9, as in the real file


def check_sizes(layout, cfg: dict) -> dict:
    """{modality: size} of a synthetic entry, after checking that every modality has a size and a
    signal strength."""
    for key, what in (("dims", "a size"), ("signal", "a strength")):
        missing = [m for m in layout.modalities if m not in cfg[key]]
        if missing:
            raise ConfigError(f"synthetic.{key}: {layout.name} needs {what} for {', '.join(missing)}")
    return {m: int(cfg["dims"][m]) for m in layout.modalities}


def kind(cfg: dict) -> str:
    """The generator of a `synthetic:` entry: `styled` (maln/data/synthetic.py, also when absent) or
    one of the kinds with an exact oracle (maln/data/fusion.py)."""
    return cfg.get("kind", "styled")


def has_oracle(cfg: dict) -> bool:
    return kind(cfg) != "styled"
