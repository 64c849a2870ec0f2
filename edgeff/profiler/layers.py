"""The layers the profiler costs: a model description's, each through its kind's cost facet, plus the
network's fully connected classifiers (the FF one-pass head, backprop's classifier)."""
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.op_registry import layer_facet, spec_class


def description(layers) -> ModelDescription:
    """A model description as given, or the one of an FF MLP given by its sizes (input width, then each
    layer's width)."""
    if isinstance(layers, ModelDescription):
        return layers
    if len(layers) < 2 or any(not isinstance(d, int) or d < 1 for d in layers):
        raise EdgeFFError(f"layer sizes {layers}: need at least an input and one layer, all positive integers")
    return ModelDescription.dense(list(layers))


def classifier(d_in: int, n_classes: int):
    """A classifier over d_in values: a fully connected layer, costed as a dense layer."""
    return spec_class("dense")(d_in, n_classes)


def cost(spec):
    """The cost facet of a layer spec's kind."""
    return layer_facet(spec, "cost")
