"""Flatten's entry in a model description: {"kind": "flatten", "channels", "height", "width"}: a (C, H, W)
activity as C*H*W values (torch's NCHW order), the input of a dense layer after conv blocks. No tensors.
Core code: imports nothing above edgeff.errors."""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError


@dataclass(frozen=True)
class FlattenSpec:
    channels: int
    height: int
    width: int
    kind = "flatten"

    def __post_init__(self):
        for name in ("channels", "height", "width"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise EdgeFFError(f"flatten layer: '{name}' must be a positive integer, got {value!r}")

    @classmethod
    def after(cls, shape: tuple) -> "FlattenSpec":
        if len(shape) != 3:
            raise EdgeFFError(f"a flatten layer needs an image-shaped input (channels, height, width), got {shape}")
        return cls(*shape)

    @property
    def in_shape(self) -> tuple:
        return (self.channels, self.height, self.width)

    @property
    def out_shape(self) -> tuple:
        return (self.n_outputs,)

    @property
    def n_inputs(self) -> int:
        return self.channels * self.height * self.width

    @property
    def n_outputs(self) -> int:
        return self.n_inputs

    def float_tensors(self) -> dict:
        return {}

    def int8_tensors(self, norm_bits: int) -> dict:
        raise EdgeFFError("an int8 flatten layer has no tensor layout yet: quantizing flatten layers is not "
                          "supported yet")

    def to_header(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


SPEC = FlattenSpec
