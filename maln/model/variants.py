"""The study's variants: the full model and its ablations, defined here and nowhere else (the
schema's enum and the workflow's job list are checked against / derived from this table)."""

from __future__ import annotations

from dataclasses import dataclass

from maln.errors import NotApplicable

MODALITY_ORDER = ("text", "audio", "visual")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    modality: str | None = None  # single-modality variants: SCLM + context encoder + classifier, no AMDM
    sclm: bool = True
    adversary: bool = True

    def modalities(self, available) -> tuple[str, ...]:
        """The modalities this variant uses on a dataset with `available` ones."""
        if self.modality is not None:
            return (self.modality,) if self.modality in available else ()
        present = tuple(m for m in MODALITY_ORDER if m in available)
        return present if len(present) >= 2 else ()

    def applicable(self, available) -> bool:
        return bool(self.modalities(available))

    def check(self, available, dataset: str) -> tuple[str, ...]:
        mods = self.modalities(available)
        if not mods:
            need = f"the {self.modality} modality" if self.modality else "at least two modalities"
            raise NotApplicable(f"not applicable: variant {self.name} needs {need}; dataset {dataset} has "
                                f"{', '.join(available) or 'none'}")
        return mods


VARIANTS = {
    v.name: v
    for v in (
        Variant("full", "the whole model: SCLM, AMDM with its adversary, cross-modal attention"),
        Variant("no_sclm", "without the speaker-characteristic module", sclm=False),
        Variant("no_adversary", "without the modality discriminator and gradient reversal", adversary=False),
        Variant("text_only", "text alone (SCLM + context encoder + classifier)", modality="text"),
        Variant("audio_only", "audio alone (SCLM + context encoder + classifier)", modality="audio"),
        Variant("visual_only", "visual alone (SCLM + context encoder + classifier)", modality="visual"),
    )
}


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        from maln.errors import ConfigError

        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None
