"""The dense layer's entry in a model description: {"kind": "dense", "in_features", "out_features",
"normalization", "activation"}. Core code: imports nothing above edgeff.errors (an import-linter contract)."""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError

NORMALIZATIONS = ("rms", "length")
ACTIVATIONS = ("relu",)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class DenseSpec:
    """The FF dense layer: normalize the input (to unit mean square, "rms", or unit length, "length"),
    then Linear (in_features -> out_features), then the activation."""

    in_features: int
    out_features: int
    normalization: str = "rms"
    activation: str = "relu"
    kind = "dense"   # a class attribute: not a field, the same for every dense layer

    def __post_init__(self):
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if not (_is_int(value) and value > 0):
                raise EdgeFFError(f"dense layer: '{name}' must be a positive integer, got {value!r}")
        if self.normalization not in NORMALIZATIONS:
            raise EdgeFFError(f"dense layer: 'normalization' must be one of {', '.join(NORMALIZATIONS)}, "
                              f"got {self.normalization!r}")
        if self.activation not in ACTIVATIONS:
            raise EdgeFFError(f"dense layer: 'activation' must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {self.activation!r}")

    @property
    def n_inputs(self) -> int:
        """Values one sample feeds this layer (flattened)."""
        return self.in_features

    @property
    def n_outputs(self) -> int:
        """Values this layer gives per sample (flattened)."""
        return self.out_features

    def to_header(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


SPEC = DenseSpec
