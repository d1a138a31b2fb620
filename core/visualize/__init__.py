"""What a network learns: layer-1 filters, the patches that excite a unit, activation maps,
and images optimised to excite a unit. Works for any registered PyTorch conv net: a model
plus a list of named layers (:mod:`core.visualize.layers`)."""
