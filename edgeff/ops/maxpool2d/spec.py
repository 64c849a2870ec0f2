"""Max pooling's entry in a model description: {"kind": "maxpool2d", "in_channels", "in_height", "in_width",
"size"}: non-overlapping size x size windows (kernel = stride = size, no padding) over a (C, H, W) activity,
each giving its largest value; a side that size does not divide is floored, as torch's MaxPool2d does. No
tensors. Core code: imports only edgeff.errors and edgeff.ops.layer_spec.
"""
from dataclasses import dataclass

from edgeff.errors import EdgeFFError
from edgeff.ops.layer_spec import ShapedSpec, require_image, require_positive_ints


@dataclass(frozen=True)
class MaxPool2dSpec(ShapedSpec):
    in_channels: int
    in_height: int
    in_width: int
    size: int
    kind = "maxpool2d"   # a class attribute: not a field

    def __post_init__(self):
        require_positive_ints(self, ("in_channels", "in_height", "in_width", "size"))
        if self.size > min(self.in_height, self.in_width):
            raise EdgeFFError(f"maxpool2d layer: size {self.size} is larger than its {self.in_height}x"
                              f"{self.in_width} input; use a size of at most {min(self.in_height, self.in_width)}")

    @classmethod
    def after(cls, shape: tuple, **params) -> "MaxPool2dSpec":
        """The pooling that takes activities of `shape` (channels, height, width) from the layer before it."""
        require_image(cls.kind, shape, "; put it before the flatten layer")
        return cls(*shape, **params)

    @property
    def in_shape(self) -> tuple:
        return (self.in_channels, self.in_height, self.in_width)

    @property
    def out_shape(self) -> tuple:
        return (self.in_channels, self.in_height // self.size, self.in_width // self.size)

    def float_tensors(self) -> dict:
        return {}

    def int8_tensors(self, norm_bits: int) -> dict:
        return {}   # int8 in, int8 out at the same scale and zero point: nothing to store


SPEC = MaxPool2dSpec
