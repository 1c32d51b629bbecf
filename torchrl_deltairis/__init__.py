"""Delta-IRIS (Micheli et al., "Efficient World Models with Context-Aware Tokenization", ICML 2024)
rebuilt on TorchRL."""

__version__ = "0.1.0"
