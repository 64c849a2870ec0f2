"""Flatten's entry in a model description: {"kind": "flatten", "channels", "height", "width"}: a (C, H, W)
activity as C*H*W values (torch's NCHW order), the input of a dense layer after conv blocks. No tensors.
Core code: imports only edgeff.errors and edgeff.ops.layer_spec."""
from dataclasses import dataclass

from edgeff.ops.layer_spec import ShapedSpec, require_image, require_positive_ints


@dataclass(frozen=True)
class FlattenSpec(ShapedSpec):
    channels: int
    height: int
    width: int
    kind = "flatten"

    def __post_init__(self):
        require_positive_ints(self, ("channels", "height", "width"))

    @classmethod
    def after(cls, shape: tuple) -> "FlattenSpec":
        require_image(cls.kind, shape)
        return cls(*shape)

    @property
    def in_shape(self) -> tuple:
        return (self.channels, self.height, self.width)

    @property
    def out_shape(self) -> tuple:
        return (self.channels * self.height * self.width,)

    def float_tensors(self) -> dict:
        return {}

    def int8_tensors(self, norm_bits: int) -> dict:
        return {}   # int8 in, int8 out at the same scale and zero point: nothing to store


SPEC = FlattenSpec
