"""MALN: Multimodal Adversarial Learning Network for conversational emotion recognition,
reproducible end to end (data, training, ablations, tables and figures)."""

__version__ = "0.1.0"
