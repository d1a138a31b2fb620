"""The hub's PyTorch library: models, formulas and image handling, with no UI code."""
