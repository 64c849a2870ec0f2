"""A small builder for ONNX graphs (named ops and constants) that writes files onnxruntime loads, with the
float and int64 building blocks the exporters and the op folders' ONNX writers (edgeff/ops/<kind>/onnx_writer.py)
share."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8   # what opset 17 needs; onnx writes its newest IR, newer than onnxruntime loads
EPS = 1e-8       # FFNetwork's normalizer epsilon


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = 0
        self._consts = {}

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype=None) -> str:
        """An initializer holding value; equal small constants are shared."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key in self._consts:
            return self._consts[key]
        name = self._fresh("const")
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def input(self, name: str, elem_type: int, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, tensor: str, elem_type: int, shape):
        self.nodes.append(helper.make_node("Identity", [tensor], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeff",
                                  doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model

    # ------------------------------------------------------------------ float helpers
    def f32(self, value) -> str:
        return self.const(value, np.float32)

    def reduce_last(self, x: str, mean: bool, keepdims: int) -> str:
        """Sum or mean over the last axis (opset 17: ReduceSum takes axes as an input, ReduceMean as an attribute)."""
        if mean:
            return self.op("ReduceMean", x, axes=[-1], keepdims=keepdims)
        return self.op("ReduceSum", x, self.i64([-1]), keepdims=keepdims)

    def normalize(self, x: str, kind: str) -> str:
        """x * rsqrt(mean(x^2) + eps) ("rms") or x * rsqrt(sum(x^2) + eps) ("length"), per row."""
        sq = self.reduce_last(self.op("Mul", x, x), kind == "rms", 1)
        return self.op("Mul", x, self.op("Reciprocal", self.op("Sqrt", self.op("Add", sq, self.f32(EPS)))))

    def max_pool(self, x: str, size: int) -> str:
        """MaxPool of NCHW values over size x size windows at stride size, the remainder dropped (torch's
        F.max_pool2d(x, size), TFLite's MAX_POOL_2D VALID)."""
        return self.op("MaxPool", x, kernel_shape=[size, size], strides=[size, size])

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """x @ weight.T + bias, for a float (out, in) weight."""
        return self.op("Add", self.op("MatMul", x, self.f32(np.ascontiguousarray(weight.T))), self.f32(bias))

    # ------------------------------------------------------------------ int64 arithmetic helpers
    def i64(self, value) -> str:
        return self.const(value, np.int64)

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", x, to=to)

    def clip(self, x: str, lo: int, hi: int) -> str:
        return self.op("Min", self.op("Max", x, self.i64(lo)), self.i64(hi))

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", cond, a, b)

    def pow2(self, exponent: str) -> str:
        """2^e for a non-negative int64 tensor e (BitShift works on unsigned types only)."""
        one = self.const(np.uint64(1))
        return self.cast(self.op("BitShift", one, self.cast(exponent, TensorProto.UINT64), direction="LEFT"),
                         TensorProto.INT64)
