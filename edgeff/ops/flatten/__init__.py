"""Flatten: a (channels, height, width) activity as one vector, between the conv blocks and a dense layer.

Its trainer and profiler facets exist; its integer backends do not yet (the registry refuses them by name)."""
FACETS = ("spec", "torch_module", "cost")
