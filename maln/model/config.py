"""The model's hyperparameters as a typed object (params.yaml `model:` holds the values)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from maln.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    width: int
    context_hidden: dict  # modality -> GRU hidden size
    context_layers: int
    sclm_layers: int
    sclm_heads: int
    sclm_feedforward: int
    attention_heads: int
    discriminator_hidden: int
    grl_scale: float
    dropout: float
    feature_dropout: float
    head_dropout: float
    input_dropout: float
    modality_dropout: float

    def __post_init__(self):
        for key, heads in (("sclm.heads", self.sclm_heads), ("attention_heads", self.attention_heads)):
            if self.width % heads:
                raise ConfigError(f"model.{key}: {heads} does not divide model.width {self.width}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(
            width=d["width"],
            context_hidden=dict(d["context"]["hidden"]),
            context_layers=d["context"]["layers"],
            sclm_layers=d["sclm"]["layers"],
            sclm_heads=d["sclm"]["heads"],
            sclm_feedforward=d["sclm"]["feedforward"],
            attention_heads=d["attention_heads"],
            discriminator_hidden=d["discriminator_hidden"],
            grl_scale=d["grl_scale"],
            dropout=d["dropout"],
            feature_dropout=d["feature_dropout"],
            head_dropout=d["head_dropout"],
            input_dropout=d["input_dropout"],
            modality_dropout=d["modality_dropout"],
        )

    def to_dict(self) -> dict:
        return asdict(self)
