"""Max pooling's entry in a model description: {"kind": "maxpool2d", "in_channels", "in_height", "in_width",
"size"}: non-overlapping size x size windows (kernel = stride = size, no padding) over a (C, H, W) activity,
each giving its largest value; a side that size does not divide is floored, as torch's MaxPool2d does. No
tensors. Core code: imports nothing above edgeff.errors.
"""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError


@dataclass(frozen=True)
class MaxPool2dSpec:
    in_channels: int
    in_height: int
    in_width: int
    size: int
    kind = "maxpool2d"   # a class attribute: not a field

    def __post_init__(self):
        for name in ("in_channels", "in_height", "in_width", "size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise EdgeFFError(f"maxpool2d layer: '{name}' must be a positive integer, got {value!r}")
        if self.size > min(self.in_height, self.in_width):
            raise EdgeFFError(f"maxpool2d layer: size {self.size} is larger than its {self.in_height}x"
                              f"{self.in_width} input; use a size of at most {min(self.in_height, self.in_width)}")

    @classmethod
    def after(cls, shape: tuple, **params) -> "MaxPool2dSpec":
        """The pooling that takes activities of `shape` (channels, height, width) from the layer before it."""
        if len(shape) != 3:
            raise EdgeFFError(f"a maxpool2d layer needs an image-shaped input (channels, height, width), got "
                              f"{shape}; put it before the flatten layer")
        return cls(*shape, **params)

    @property
    def in_shape(self) -> tuple:
        return (self.in_channels, self.in_height, self.in_width)

    @property
    def out_shape(self) -> tuple:
        return (self.in_channels, self.in_height // self.size, self.in_width // self.size)

    @property
    def n_inputs(self) -> int:
        c, h, w = self.in_shape
        return c * h * w

    @property
    def n_outputs(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def float_tensors(self) -> dict:
        return {}

    def int8_tensors(self, norm_bits: int) -> dict:
        raise EdgeFFError("an int8 maxpool2d layer has no tensor layout yet: quantizing maxpool2d layers is not "
                          "supported yet")

    def to_header(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


SPEC = MaxPool2dSpec
