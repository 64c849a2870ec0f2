"""What the layer specs (edgeff/ops/<kind>/spec.py) share: positive-integer parameters checked by name, the
image-shaped input that conv2d, maxpool2d and flatten take from the layer before, value counts from a
spec's shapes and its header entry. Core code, as the specs are: imports nothing above edgeff.errors."""
from dataclasses import asdict
from math import prod

from edgeff.errors import EdgeFFError


def require_positive_ints(spec, names: tuple):
    for name in names:
        value = getattr(spec, name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise EdgeFFError(f"{spec.kind} layer: '{name}' must be a positive integer, got {value!r}")


def require_image(kind: str, shape: tuple, hint: str = ""):
    """Refuse an input that is not (channels, height, width); `hint` says what to do instead."""
    if len(shape) != 3:
        raise EdgeFFError(f"a {kind} layer needs an image-shaped input (channels, height, width), got {shape}{hint}")


class ShapedSpec:
    """For a frozen dataclass spec with `kind`, `in_shape` and `out_shape`: what follows from them."""

    @property
    def n_inputs(self) -> int:
        return prod(self.in_shape)

    @property
    def n_outputs(self) -> int:
        return prod(self.out_shape)

    def to_header(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

