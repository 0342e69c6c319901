"""tokencredit: token-level credit assignment for RLVR on vision-language models."""

__version__ = "0.1.0"
