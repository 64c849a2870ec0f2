"""The dense layer's entry in a model description: {"kind": "dense", "in_features", "out_features",
"normalization", "activation"}. Core code: imports only edgeff.errors and edgeff.ops.layer_spec (an
import-linter contract)."""
from dataclasses import dataclass

from edgeff.errors import EdgeFFError
from edgeff.ops.layer_spec import ShapedSpec, require_positive_ints

NORMALIZATIONS = ("rms", "length")
ACTIVATIONS = ("relu",)


@dataclass(frozen=True)
class DenseSpec(ShapedSpec):
    """The FF dense layer: normalize the input (to unit mean square, "rms", or unit length, "length"),
    then Linear (in_features -> out_features), then the activation."""

    in_features: int
    out_features: int
    normalization: str = "rms"
    activation: str = "relu"
    kind = "dense"   # a class attribute: not a field, the same for every dense layer

    def __post_init__(self):
        require_positive_ints(self, ("in_features", "out_features"))
        if self.normalization not in NORMALIZATIONS:
            raise EdgeFFError(f"dense layer: 'normalization' must be one of {', '.join(NORMALIZATIONS)}, "
                              f"got {self.normalization!r}")
        if self.activation not in ACTIVATIONS:
            raise EdgeFFError(f"dense layer: 'activation' must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {self.activation!r}")

    @classmethod
    def after(cls, shape: tuple, **params) -> "DenseSpec":
        """The dense layer that takes the previous layer's activities (of `shape`, flattened)."""
        n = 1
        for side in shape:
            n *= side
        return cls(n, **params)

    @property
    def in_shape(self) -> tuple:
        return (self.in_features,)

    @property
    def out_shape(self) -> tuple:
        return (self.out_features,)

    def float_tensors(self) -> dict:
        """Name suffix -> shape of this layer's tensors in a float model file (layers.<i>.<suffix>)."""
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def int8_tensors(self, norm_bits: int) -> dict:
        """Name suffix -> (dtype name, shape) of this layer's tensors in an int8 model file. The bias is int64
        after a 16-bit normalization (norm_bits 15: TFLite's 16x8 FullyConnected), int32 after an int8 one."""
        out = (self.out_features,)
        return {"weight": ("int8", (self.out_features, self.in_features)),
                "bias": ("int32" if norm_bits == 7 else "int64", out),
                "multiplier": ("int32", out), "shift": ("int32", out),
                "goodness_multiplier": ("int32", (1,)), "goodness_shift": ("int32", (1,))}


SPEC = DenseSpec
