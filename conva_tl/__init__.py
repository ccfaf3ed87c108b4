"""ConVA (Controlled Value Vector Activation) on TransformerLens."""

__version__ = "0.1.0"
