"""The model's hyperparameters as a typed object (params.yaml `model:` holds the values)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from maln.errors import ConfigError

SCLM_READS = ("context", "features")
SCLM_POOLS = ("speaker", "dialogue")
FUSIONS = ("specific", "common")
TRAININGS = ("joint", "branchwise")
DECODES = ("none", "chain")
AMDM_READS = ("branches", "features")


@dataclass(frozen=True)
class ModelConfig:
    width: int
    context_hidden: dict  # modality -> GRU hidden size, also the context encoder's output size
    context_layers: int
    context_dropout: float
    sclm_reads: str  # context | features
    sclm_pool: str  # speaker | dialogue
    sclm_layers: int
    sclm_heads: int
    sclm_feedforward: int
    sclm_max_positions: int
    attention_heads: int
    cross_gate: bool
    fusion: str  # specific | common: what the cross-modal block and the classifier read
    training: str  # joint | branchwise (maln/model/maln.py)
    amdm_reads: str  # branches (context + SCLM, the paper) | features (the standardised inputs; branchwise only)
    adversary: str  # amdm.ADVERSARIES
    discriminator_hidden: int
    grl_scale: float
    dropout: float
    common_dropout: float
    fusion_dropout: float
    standardize: bool
    input_dropout: float
    branch_input_dropout: float | None  # None: the branches read the fusion path's (dropped) inputs
    input_noise: float
    modality_dropout: float
    decode: str  # none | chain: the prediction decoded by the training split's emotion chain (maln/chain.py)
    linear_head: bool  # branchwise: the regressions on the inputs as heads of the combination (maln/teacher.py)
    fusion_experts: int = 0  # the fusion classifier's mixture of linear experts beside its hidden layer (0: none, the authors')
    linear_lda: bool = False  # each linear head: the regression or, by validation likelihood, shrinkage LDA (maln/teacher.py)

    def __post_init__(self):
        for key, heads in (("sclm.heads", self.sclm_heads), ("attention_heads", self.attention_heads)):
            if self.width % heads:
                raise ConfigError(f"model.{key}: {heads} does not divide model.width {self.width}")
        if self.amdm_reads == "features" and self.training != "branchwise":
            raise ConfigError("model.amdm_reads: features needs model.training: branchwise (jointly, nothing would "
                              "train the context encoders)")
        if self.linear_head and not self.standardize:
            raise ConfigError("model.linear_head needs model.standardize: true (its regression is fitted on the "
                              "standardised features); set model.linear_head=false")
        if self.linear_head and self.training != "branchwise":
            raise ConfigError("model.linear_head needs model.training: branchwise (its heads join the validated "
                              "combination of heads, which a jointly trained model does not have); set "
                              "model.linear_head=false, or configuration=paper for the authors' way to train")

    def linear_inputs(self, modalities) -> dict:
        """model.linear_head's regressions, head name -> the modalities it reads: `linear` reads all of
        the model's; a multimodal model's `linear_<m>` each modality alone, weighed with its branch as a
        single modality's `linear` is (inference._choose_weights). Empty without the head."""
        if not self.linear_head:
            return {}
        return {"linear": tuple(modalities), **({f"linear_{m}": (m,) for m in modalities} if len(modalities) > 1 else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(
            width=d["width"],
            context_hidden=dict(d["context"]["hidden"]),
            context_layers=d["context"]["layers"],
            context_dropout=d["context"]["dropout"],
            sclm_reads=d["sclm"]["reads"],
            sclm_pool=d["sclm"]["pool"],
            sclm_layers=d["sclm"]["layers"],
            sclm_heads=d["sclm"]["heads"],
            sclm_feedforward=d["sclm"]["feedforward"],
            sclm_max_positions=d["sclm"]["max_positions"],
            attention_heads=d["attention_heads"],
            cross_gate=d["cross_gate"],
            fusion=d["fusion"],
            training=d["training"],
            amdm_reads=d["amdm_reads"],
            adversary=d["adversary"],
            discriminator_hidden=d["discriminator_hidden"],
            grl_scale=d["grl_scale"],
            dropout=d["dropout"],
            common_dropout=d["common_dropout"],
            fusion_dropout=d["fusion_dropout"],
            standardize=d["standardize"],
            input_dropout=d["input_dropout"],
            branch_input_dropout=d["branch_input_dropout"],
            input_noise=d["input_noise"],
            modality_dropout=d["modality_dropout"],
            decode=d["decode"],
            linear_head=d["linear_head"],
            fusion_experts=d["fusion_experts"],
            linear_lda=d["linear_lda"],
        )

    def to_dict(self) -> dict:
        return asdict(self)
