"""The conv block's entry in a model description: {"kind": "conv2d", "in_channels", "in_height", "in_width",
"out_channels", "kernel", "padding", "stride", "pool"}. Core code: imports only edgeff.errors and edgeff.ops.layer_spec.

The block is BatchNorm2d(in_channels) -> Conv2d(kernel x kernel, padding, stride) -> ReLU -> MaxPool2d(pool)
(pool 1: none), the FF layer of Ortiz Torres et al. sec. III. Activities are NCHW; n_inputs / n_outputs count one
sample's values, as for every kind, and in_shape / out_shape give their (C, H, W) layout.
"""
from dataclasses import dataclass

from edgeff.errors import EdgeFFError
from edgeff.ops.layer_spec import ShapedSpec, require_image, require_positive_ints


@dataclass(frozen=True)
class Conv2dSpec(ShapedSpec):
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel: int
    padding: int = 0
    stride: int = 1
    pool: int = 1
    kind = "conv2d"   # a class attribute: not a field

    def __post_init__(self):
        require_positive_ints(self, ("in_channels", "in_height", "in_width", "out_channels", "kernel", "stride",
                                     "pool"))
        if not (isinstance(self.padding, int) and not isinstance(self.padding, bool)
                and 0 <= self.padding < self.kernel):
            raise EdgeFFError(f"conv2d layer: 'padding' must be an integer from 0 to kernel - 1 "
                              f"({self.kernel - 1}), got {self.padding!r}")
        h, w = self.conv_shape[1:]
        if h < 1 or w < 1:
            raise EdgeFFError(f"conv2d layer: a {self.kernel}x{self.kernel} kernel with padding {self.padding} "
                              f"does not fit a {self.in_height}x{self.in_width} input; use a smaller kernel or "
                              "more padding")
        if h < self.pool or w < self.pool:
            raise EdgeFFError(f"conv2d layer: pool {self.pool} is larger than the {h}x{w} convolution output")

    @classmethod
    def after(cls, shape: tuple, **params) -> "Conv2dSpec":
        """The block that takes activities of `shape` (channels, height, width) from the layer before it."""
        require_image(cls.kind, shape)
        return cls(*shape, **params)

    @property
    def in_shape(self) -> tuple:
        return (self.in_channels, self.in_height, self.in_width)

    @property
    def conv_shape(self) -> tuple:
        """(C, H, W) of the convolution's output, before pooling."""
        def side(n):
            return (n + 2 * self.padding - self.kernel) // self.stride + 1
        return (self.out_channels, side(self.in_height), side(self.in_width))

    @property
    def out_shape(self) -> tuple:
        c, h, w = self.conv_shape
        return (c, h // self.pool, w // self.pool)   # MaxPool2d floors, as torch does

    def float_tensors(self) -> dict:
        """Name suffix -> shape of this block's tensors in a float model file (layers.<i>.<suffix>): the
        BatchNorm's affine parameters and running statistics, the convolution's weight and bias. torch's
        scalar batch counter is stored with shape (1,), as safetensors writes it."""
        c, k = self.in_channels, self.kernel
        return {"norm.weight": (c,), "norm.bias": (c,), "norm.running_mean": (c,), "norm.running_var": (c,),
                "norm.num_batches_tracked": (1,), "conv.weight": (self.out_channels, c, k, k),
                "conv.bias": (self.out_channels,)}

    def int8_tensors(self, norm_bits: int) -> dict:
        """Name suffix -> (dtype name, shape) of this block's tensors in an int8 model file: the filters with
        the BatchNorm folded in, OHWI (out, kernel, kernel, in) as TFLite stores them, the int32 bias at
        scale s_in * s_w[o], the per-output-channel multiplier and shift, and per input channel the int8 value
        the input is padded with (norm_bits: a dense layer's, unused)."""
        o, k = self.out_channels, self.kernel
        return {"weight": ("int8", (o, k, k, self.in_channels)), "bias": ("int32", (o,)),
                "multiplier": ("int32", (o,)), "shift": ("int32", (o,)), "pad_value": ("int8", (self.in_channels,))}


SPEC = Conv2dSpec
