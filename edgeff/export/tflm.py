"""TensorFlow Lite Micro's own interpreter (the `tflite-micro` package: TFLM's reference kernels built for the
host): run an exported .tflite as a board running TFLM would, measure the tensor arena it needs, and write the
C++ lines that register exactly the ops the model uses.

TFLM runs tensors at their stored shapes (batch 1) and never resizes them, so images go in one at a time.
"""
import contextlib
import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from tqdm import tqdm

from edgeff.errors import EdgeFFError

ARENA_ALIGNMENT = 16   # TFLM aligns tensor buffers to 16 bytes; the arena is measured to that granularity

# TFLM's MicroMutableOpResolver registration of each builtin the exporters write (micro_mutable_op_resolver.h)
RESOLVER_METHODS = {
    "ADD": "AddAdd", "CAST": "AddCast", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "FULLY_CONNECTED": "AddFullyConnected", "L2_NORMALIZATION": "AddL2Normalization", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MINIMUM": "AddMinimum", "PACK": "AddPack", "PAD": "AddPad",
    "RESHAPE": "AddReshape", "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice", "TRANSPOSE": "AddTranspose",
}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise EdgeFFError("TensorFlow Lite Micro's interpreter is not installed; install it with "
                          "`pip install tflite-micro` (part of edgeff's export extra)") from None
    return runtime


@contextlib.contextmanager
def _quiet_stderr():
    """TFLM reports a failed allocation on the process's stderr (C++ fd 2): keep it off the user's terminal
    while the arena search makes allocations fail on purpose."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def interpreter(content: bytes, arena_size: int | None = None):
    try:
        return _runtime().Interpreter.from_bytes(content, arena_size=arena_size)
    except RuntimeError as exc:
        raise EdgeFFError(f"TensorFlow Lite Micro cannot run this model ({exc}); export it again with "
                          "`edgeff export`") from None


def run_tflm(content: bytes, inputs: np.ndarray, progress=False) -> dict:
    """Outputs of the model in TFLM, image by image, stacked along the batch axis as LiteRT's would be."""
    it = interpreter(content)
    names = op_names_and_outputs(content)[1]
    parts = {name: [] for name in names}
    for row in tqdm(range(len(inputs)), desc="TensorFlow Lite Micro", unit="image", disable=not progress,
                    leave=False):
        it.set_input(inputs[row:row + 1], 0)
        it.invoke()
        for i, name in enumerate(names):
            parts[name].append(it.get_output(i))
    # the batch axis of each output is the one whose stored size is 1 and signature -1: the second-to-last
    return {name: np.concatenate(p, axis=-2) for name, p in parts.items()}


def arena_bytes(content: bytes) -> int:
    """The smallest tensor arena (to 16 bytes) with which TFLM's interpreter allocates the model, found by
    bisection; a board's arena must be at least this big."""
    def allocates(size):
        try:
            _runtime().Interpreter.from_bytes(content, arena_size=size)
            return True
        except RuntimeError:
            return False

    low, high = 0, max(1 << 16, 10 * len(content))
    with _quiet_stderr():
        while not allocates(high):
            low, high = high, 2 * high
        while high - low > ARENA_ALIGNMENT:
            mid = (low + high) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
            low, high = (low, mid) if allocates(mid) else (mid, high)
    return high


def op_names_and_outputs(content: bytes) -> tuple[list[str], list[str]]:
    """The builtin op names the model uses (in first-use order) and its output tensor names."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    ops = [_OP_NAMES.get(max(c.builtinCode, c.deprecatedBuiltinCode), str(c.builtinCode))
           for c in model.operatorCodes]
    sub = model.subgraphs[0]
    return ops, [sub.tensors[i].name.decode() for i in sub.outputs]


def decision_constants(multipliers, shifts, eval_layers, n_classes: int, array: str) -> str:
    """C arrays a board needs to turn the goodness output into the multi-pass prediction exactly as EdgeFF
    does (an MLP's per-layer goodness or a layered model's class goodness; `multipliers` / `shifts` per layer,
    eval_layers 1-based): each layer's raw goodness rescaled to the common fixed point (TFLM's own
    MultiplyByQuantizedMultiplier, double rounding), summed over the evaluated layers; argmax over labels."""
    def c_array(ctype, name, values):
        return f"static const {ctype} {array}_{name}[{len(values)}] = {{{', '.join(map(str, values))}}};"

    return "\n".join([
        c_array("int32_t", "goodness_multiplier", [int(m) for m in multipliers]),
        c_array("int", "goodness_shift", [int(s) for s in shifts]),
        c_array("int", "eval_layers", [int(i) - 1 for i in eval_layers]),   # 0-based rows of output(0)
        f"#define {array.upper()}_N_CLASSES {n_classes}"])


def resolver_snippet(content: bytes, array: str, arena: int) -> str:
    """The C++ that runs the model in TFLM on a board: an op resolver with exactly the model's ops, the
    measured arena, and the interpreter."""
    ops = op_names_and_outputs(content)[0]
    unknown = [op for op in ops if op not in RESOLVER_METHODS]
    if unknown:
        raise EdgeFFError(f"no TFLM resolver registration known for {', '.join(unknown)}")
    adds = "\n".join(f"  resolver.{RESOLVER_METHODS[op]}();" for op in ops)
    return f"""#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kArenaBytes = {arena};   // measured by TFLM's interpreter (edgeff export)
alignas(16) static uint8_t arena[kArenaBytes];

tflite::MicroInterpreter* make_interpreter() {{
  static tflite::MicroMutableOpResolver<{len(ops)}> resolver;
{adds}
  static tflite::MicroInterpreter interpreter(tflite::GetModel({array}), resolver, arena, kArenaBytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return nullptr;
  return &interpreter;  // input(0): int8 pixels - 128; output(0): int32 goodness; output(1): int8 logits
}}

// one-pass: the class is the argmax of output(1). Multi-pass, as EdgeFF decides it:
int multi_pass_class(const TfLiteTensor* goodness) {{   // int32 (n_layers, 1, n_classes)
  int best = 0;
  int64_t best_score = INT64_MIN;
  for (int c = 0; c < {array.upper()}_N_CLASSES; ++c) {{
    int64_t score = 0;
    for (int l : {array}_eval_layers)
      score += tflite::MultiplyByQuantizedMultiplier(
          goodness->data.i32[l * {array.upper()}_N_CLASSES + c], {array}_goodness_multiplier[l],
          {array}_goodness_shift[l]);
    if (score > best_score) {{ best_score = score; best = c; }}
  }}
  return best;
}}"""
