"""ConVA on TransformerLens."""
