"""The int8 model as an ONNX graph of integer ops whose outputs equal the NumPy runtime's bit for bit.

The FC products are MatMulInteger (int8 x int8 -> int32); everything else is int64 elementwise
arithmetic that spells out the runtime's integer kernels: the int32 bias add, MultiplyByQuantizedMultiplier
(SaturatingRoundingDoublingHighMul, whose C division truncates toward zero as ONNX's integer Div does,
then RoundingDivideByPOT, which is round-half-away-from-zero division by 2^k), TFLite's L2 normalization
with its Newton-Raphson inverse square root, the fused ReLU clamp and the int32 goodness.

The graph walks the model description's layers, each written by its kind's ONNX writer
(edgeff/ops/<kind>/onnx_writer.py, found by edgeff.op_registry) from these kernels.

Inputs: images uint8 (N, D), the raw pixels. Outputs: goodness int32 (n_layers, N, n_classes), each
layer's raw goodness sum (q - zp)^2 for every label (multi-pass; IntFFModel.raw_label_goodness), and
logits int8 (N, n_classes) of the one-pass head (IntFFModel.head_logits).
"""
import numpy as np
from onnx import TensorProto

from edgeff.data.labels import overlay_labels
from edgeff.errors import EdgeFFError
from edgeff.export.onnx_graph import GraphBuilder
from edgeff.op_registry import layer_facet
from edgeff.runtime.int_fully_connected import IntFullyConnected
from edgeff.runtime.int_model import INPUT_ZERO_POINT, IntFFModel
from edgeff.runtime.l2_normalization import HALF_SQRT2_Q0, HALF_THREE_Q3, NORM_BITS_INT8, ONE_Q3
from edgeff.runtime.requantize import INT32_MAX, INT32_MIN

INT64 = TensorProto.INT64


class IntegerGraph(GraphBuilder):
    """GraphBuilder with the runtime's integer kernels, on int64 tensors holding int8/int32 values."""

    def wrap_int32(self, x: str) -> str:
        """Two's-complement int32 wrap-around (Mod with fmod=0 takes the divisor's sign)."""
        return self.op("Sub", self.op("Mod", self.op("Add", x, self.i64(1 << 31)), self.i64(1 << 32)),
                       self.i64(1 << 31))

    def srdhm(self, a: str, b: str) -> str:
        """SaturatingRoundingDoublingHighMul for products that fit int64 (no INT32_MIN * INT32_MIN here:
        one operand is always a positive multiplier)."""
        ab = self.op("Mul", a, b)
        nudge = self.where(self.op("GreaterOrEqual", ab, self.i64(0)), self.i64(1 << 30), self.i64(1 - (1 << 30)))
        return self.op("Div", self.op("Add", ab, nudge), self.i64(1 << 31))

    def srdhm_non_negative(self, a: str, b: str) -> str:
        return self.op("Div", self.op("Add", self.op("Mul", a, b), self.i64(1 << 30)), self.i64(1 << 31))

    def rounding_divide(self, x: str, divisor: str, half: str) -> str:
        """RoundingDivideByPOT: x / 2^k rounded half away from zero (divisor 2^k, half 2^k / 2)."""
        return self.op("Div", self.op("Add", x, self.op("Mul", self.op("Sign", x), half)), divisor)

    def saturating_shift_left(self, x: str, exponent: int) -> str:
        return self.clip(self.op("Mul", x, self.i64(1 << exponent)), INT32_MIN, INT32_MAX)

    def floor_divide(self, x: str, divisor: str) -> str:
        return self.op("Div", self.op("Sub", x, self.op("Mod", x, divisor)), divisor)

    def requantize(self, x: str, multiplier: str, shift: str, rounding: str) -> str:
        """MultiplyByQuantizedMultiplier(x, multiplier, shift), the tensors broadcasting (per channel or row)."""
        if rounding == "single":
            total = self.op("Sub", self.i64(31), shift)
            v = self.op("Add", self.op("Mul", x, multiplier), self.pow2(self.op("Sub", total, self.i64(1))))
            return self.wrap_int32(self.floor_divide(v, self.pow2(total)))
        left = self.op("Max", shift, self.i64(0))
        right = self.op("Max", self.op("Neg", shift), self.i64(0))
        x = self.wrap_int32(self.op("Mul", x, self.pow2(left)))
        divisor = self.pow2(right)
        return self.rounding_divide(self.srdhm(x, multiplier), divisor, self.op("Div", divisor, self.i64(2)))

    def inv_sqrt(self, acc: str) -> tuple[str, str]:
        """GetInvSqrtQuantizedMultiplierExp over a column of sums (reverse shift -1), as the runtime's
        vectorized version computes it (l2_normalization.inv_sqrt_quantized_multiplier)."""
        small = self.op("LessOrEqual", acc, self.i64(1))
        a = self.where(small, self.i64(2), acc)
        big = self.op("GreaterOrEqual", a, self.i64(1 << 29))
        a = self.where(big, self.op("Div", a, self.i64(4)), a)
        shift = self.op("Add", self.i64(11), self.cast(big, INT64))
        powers = self.i64((np.int64(1) << np.arange(32, dtype=np.int64))[None])
        bit_length = self.op("ReduceSum", self.cast(self.op("GreaterOrEqual", a, powers), INT64), self.i64([1]),
                             keepdims=1)
        pairs = self.op("Sub", self.op("Div", self.op("Sub", self.op("Sub", self.i64(32), bit_length),
                                                          self.i64(1)), self.i64(2)), self.i64(1))
        shift = self.op("Sub", shift, pairs)
        a = self.op("Mul", a, self.pow2(self.op("Mul", pairs, self.i64(2))))
        half_input = self.op("Div", self.op("Add", self.op("Div", a, self.i64(2)), self.i64(1)), self.i64(2))
        x = self.i64(ONE_Q3)
        for _ in range(5):
            x3 = self.srdhm_non_negative(self.srdhm_non_negative(x, x), x)
            x3 = self.saturating_shift_left(x3, 6)
            t1 = self.srdhm_non_negative(self.i64(HALF_THREE_Q3), x)
            t2 = self.srdhm_non_negative(half_input, x3)
            x = self.saturating_shift_left(self.op("Sub", t1, t2), 3)
        x = self.srdhm_non_negative(x, self.i64(HALF_SQRT2_Q0))
        neg = self.op("Less", shift, self.i64(0))
        x = self.where(neg, self.wrap_int32(self.op("Mul", x, self.pow2(self.op("Max", self.op("Neg", shift),
                                                                                  self.i64(0))))), x)
        shift = self.where(neg, self.i64(0), shift)
        x = self.where(small, self.i64(INT32_MAX), x)
        shift = self.where(small, self.i64(0), shift)
        return x, self.op("Neg", shift)

    def l2_normalize(self, a: str, zero_point: int, rounding: str) -> str:
        """TFLite's int8 L2_NORMALIZATION of every row (output scale 2^-7, zero point 0)."""
        d = self.op("Sub", a, self.i64(zero_point))
        acc = self.wrap_int32(self.op("ReduceSum", self.op("Mul", d, d), self.i64([1]), keepdims=1))
        multiplier, shift = self.inv_sqrt(acc)
        y = self.requantize(d, multiplier, self.op("Add", shift, self.i64(NORM_BITS_INT8)), rounding)
        return self.clip(y, -128, 127)

    def fully_connected(self, n: str, layer: IntFullyConnected, rounding: str) -> str:
        """int8 FC on normalized rows n: MatMulInteger, int32 bias add, requantize, clamp."""
        weight_t = self.const(np.ascontiguousarray(layer.weight.T), np.int8)
        acc = self.cast(self.op("MatMulInteger", self.cast(n, TensorProto.INT8), weight_t), INT64)
        acc = self.wrap_int32(self.op("Add", acc, self.i64(layer.bias.astype(np.int64))))
        y = self.requantize(acc, self.i64(layer.multiplier.astype(np.int64)), self.i64(layer.shift.astype(np.int64)),
                            rounding)
        return self.clip(self.op("Add", y, self.i64(layer.out_zero_point)), layer.act_min, 127)

    def max_pool(self, a: str, size: int) -> str:
        """MAX_POOL_2D of NCHW int8 values (held in int64, a type ONNX's MaxPool does not take)."""
        return self.cast(super().max_pool(self.cast(a, TensorProto.INT8), size), INT64)

    def goodness(self, a: str, zero_point: int) -> str:
        d = self.op("Sub", a, self.i64(zero_point))
        return self.op("ReduceSum", self.op("Mul", d, d), self.i64([1]), keepdims=0)


def check_exportable(model: IntFFModel, where: str):
    """Refuse what the int8 exporters cannot express, naming the layer or option."""
    for i, (spec, layer) in enumerate(zip(model.description.layers, model.layers, strict=True)):
        layer_facet(spec, "onnx_writer").check_int8_exportable(layer, i + 1, where)


def raise_unsupported(where, what, fix):
    raise EdgeFFError(f"{where}: cannot export: {what} is not supported by this format; {fix}")


def labelled_inputs(g: GraphBuilder, q: str, n_classes: int, values: list, d_in: int) -> str:
    """(len(values) * N, D) rows: q with its first n_classes entries replaced by each row of `values`,
    label-major (all images with values[0], then values[1], ...). Works for int64 and float inputs."""
    tail = g.op("Slice", q, g.i64([n_classes]), g.i64([d_in]), g.i64([1]))
    shape = g.op("Concat", g.op("Slice", g.op("Shape", q), g.i64([0]), g.i64([1])), g.i64([n_classes]), axis=0)
    copies = [g.op("Concat", g.op("Expand", row, shape), tail, axis=1) for row in values]
    return copies[0] if len(copies) == 1 else g.op("Concat", *copies, axis=0)


def by_label(g: GraphBuilder, per_row: str, n_classes: int) -> str:
    """Label-major (C * N,) values -> (N, C)."""
    return g.op("Transpose", g.op("Reshape", per_row, g.i64([n_classes, -1])), perm=[1, 0])


def build(model: IntFFModel, where: str = "model"):
    check_exportable(model, where)
    layers = [(layer_facet(spec, "onnx_writer"), spec, layer)
              for spec, layer in zip(model.description.layers, model.layers, strict=True)]
    c, d_in = model.n_classes, model.arch["sizes"][0]
    g = IntegerGraph("edgeff_int8")
    images = g.input("images", TensorProto.UINT8, ["N", d_in])
    q = g.op("Sub", g.cast(images, INT64), g.i64(-INPUT_ZERO_POINT))
    one_hot = overlay_labels(np.full((c, c), INPUT_ZERO_POINT, np.int64), np.arange(c), c, model.quant["label_q"],
                             INPUT_ZERO_POINT)
    label_rows = [g.i64(one_hot[label:label + 1]) for label in range(c)]
    a, zp = labelled_inputs(g, q, c, label_rows, d_in), INPUT_ZERO_POINT
    goodness = []
    for writer, spec, layer in layers:
        a, zp = writer.int8_forward(g, spec, layer, a, zp, model.rounding)
        goodness.append(g.op("Unsqueeze", by_label(g, g.goodness(a, zp), c), g.i64([0])))
    stacked = goodness[0] if len(goodness) == 1 else g.op("Concat", *goodness, axis=0)
    g.output("goodness", g.cast(stacked, TensorProto.INT32), TensorProto.INT32, [len(model.layers), "N", c])

    a, zp = labelled_inputs(g, q, c, [g.i64(np.full((1, c), model.quant["neutral_label_q"]))], d_in), INPUT_ZERO_POINT
    acts = []
    for writer, spec, layer in layers:
        a, zp = writer.int8_forward(g, spec, layer, a, zp, model.rounding)
        acts.append((a, zp))
    parts = [g.l2_normalize(*acts[l - 1], model.rounding) for l in model.head_layers]
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    logits = g.fully_connected(features, model.head, model.rounding)
    g.output("logits", g.cast(logits, TensorProto.INT8), TensorProto.INT8, ["N", c])
    return g.model("EdgeFF int8 FF model: multi-pass raw goodness per layer and label, one-pass head logits; "
                   "bit-exact with the EdgeFF integer runtime")
