"""Analytic training memory per layer: Forward-Forward against backprop, float32 (host, torch) and int8 (board).

Each layer's bytes are split by what they hold:
  weights       parameters used by the forward pass (and biases)
  update_state  what the update keeps between steps: Adam's two moments (float32), or the int16 master
                weights and int32 master biases (int8, the integer rule of edgeff.runtime.int_training)
  gradients     gradient buffers: float32 .grad tensors; int8 needs none at batch 1 (each master row is
                updated in place) and int32 accumulators for a batch
  activations   what the layer keeps for its update: FF one positive and one negative pass (2B rows),
                backprop one pass (B rows) but every layer's at once
  scratch       temporaries of torch's Adam step (two of the weight matrix's size: sqrt and divide)
  constants     flash: requantization multipliers and shifts (int8)

How the peak follows from them differs with the allocator:
  float32, host (dynamic allocation, measured against edgeff.train.torch_memory):
    FF       = sum(weights + update_state) + max over layers of (gradients + max(activations, scratch)),
               since FF trains one layer at a time and frees its graph and gradients before the next;
    backprop = sum(weights + update_state) + sum(gradients) + max(sum(activations), max(scratch)),
               since the backward pass needs every layer's activations and gradients at once.
    The float32 activations are what torch keeps alive at the peak of a layer's backward pass: for FF
    the layer input, its normalized copy, and four tensors of the output's size (pre-activation, ReLU
    output, its gradient, the pre-activation's gradient), all for 2B rows; for backprop each hidden
    layer's ReLU output and the classifier's logits and log-probabilities, plus one gradient of the
    widest layer in flight.
  int8, board (static buffers, the firmware's layout): everything is allocated at once, so the peak is
    the sum. FF's buffers are edgeff.runtime.memory_plan's (batch 1; activations scale with the batch).
    Backprop keeps the same weights, masters and constants per layer, plus a classifier layer, each
    layer's int8 output for the backward pass and its int32 error (delta).
"""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError
from edgeff.runtime.memory_plan import training_plan

FLOAT = 4
METHODS = ("ff", "backprop")
PRECISIONS = ("float32", "int8")
SRAM_FIELDS = ("weights", "update_state", "gradients", "activations", "scratch")


@dataclass
class LayerMemory:
    name: str
    weights: int = 0
    update_state: int = 0
    gradients: int = 0
    activations: int = 0
    scratch: int = 0
    constants: int = 0

    @property
    def sram(self) -> int:
        return sum(getattr(self, f) for f in SRAM_FIELDS)

    @property
    def total(self) -> int:
        return self.sram + self.constants

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _check(method, precision, sizes, batch):
    if method not in METHODS:
        raise EdgeFFError(f"unknown training method '{method}'; use one of {METHODS}")
    if precision not in PRECISIONS:
        raise EdgeFFError(f"unknown precision '{precision}'; use one of {PRECISIONS}")
    if len(sizes) < 2 or any(not isinstance(d, int) or d < 1 for d in sizes):
        raise EdgeFFError(f"layer sizes {sizes}: need at least an input and one layer, all positive integers")
    if batch < 1:
        raise EdgeFFError(f"batch size {batch} must be at least 1")


def _float32_layers(method: str, sizes: list, batch: int, n_classes: int) -> list:
    dims = list(zip(sizes[:-1], sizes[1:], strict=True))
    if method == "backprop":
        dims.append((sizes[-1], n_classes))
    widest = max(sizes[1:])
    rows = []
    for i, (d_in, d_out) in enumerate(dims):
        params = d_in * d_out + d_out
        is_classifier = method == "backprop" and i == len(dims) - 1
        if method == "ff":
            acts = FLOAT * 2 * batch * (2 * d_in + 4 * d_out)
        else:   # hidden: its ReLU output; classifier: logits and log-probabilities; + one gradient in flight
            acts = FLOAT * batch * (2 * d_out if is_classifier else d_out)
            acts += FLOAT * batch * widest if i == 0 else 0
        rows.append(LayerMemory("classifier" if is_classifier else f"layer {i + 1}",
                                weights=FLOAT * params, update_state=2 * FLOAT * params,
                                gradients=FLOAT * params, activations=acts, scratch=2 * FLOAT * d_in * d_out))
    return rows


def _int8_layers(method: str, sizes: list, batch: int, n_classes: int, head_layers, norm_bits) -> list:
    plan = training_plan(sizes, n_classes, head_layers or [len(sizes) - 1], norm_bits)
    n = len(sizes) - 1
    rows = [LayerMemory("shared")] + [LayerMemory(f"layer {k}") for k in range(1, n + 1)]
    for buf in plan:
        if method == "backprop" and (buf.layer == 0 or buf.role == "activations" or "goodness" in buf.name):
            continue    # backprop keeps its own activations; no goodness, coupling, sigmoid table or FF head
        row = rows[buf.layer]
        scale = batch if buf.role == "activations" else 1
        field = "constants" if buf.region == "flash" else buf.role
        setattr(row, field, getattr(row, field) + buf.bytes * scale)
    params = [d_in * d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)]
    if method == "ff":
        # a batch sums its int32 gradients before one update, one layer at a time: one accumulator
        rows[0].gradients = 4 * (max(params) + max(sizes[1:])) if batch > 1 else 0
        return rows
    rows[0].activations = batch * sizes[0]                             # the input image(s), uint8
    classifier = LayerMemory("classifier", weights=sizes[-1] * n_classes + 4 * n_classes,
                             update_state=2 * sizes[-1] * n_classes + 4 * n_classes, constants=8 * n_classes)
    rows.append(classifier)
    for row, d_out, p in zip(rows[1:], [*sizes[1:], n_classes], [*params, sizes[-1] * n_classes], strict=True):
        row.activations = batch * d_out * (1 + 4)                      # int8 output + int32 delta
        row.gradients = 4 * (p + d_out) if batch > 1 else 0            # every layer's, for the batch
    return rows


def layer_memory(method: str, precision: str, sizes: list, batch: int = 1, n_classes: int = 10,
                 head_layers=None, norm_bits=None) -> list:
    """Per-layer training memory (a list of LayerMemory; int8 has a leading 'shared' row)."""
    _check(method, precision, sizes, batch)
    if precision == "float32":
        return _float32_layers(method, sizes, batch, n_classes)
    return _int8_layers(method, sizes, batch, n_classes, head_layers, norm_bits)


def peak_bytes(method: str, precision: str, rows: list) -> int:
    """Peak training memory (SRAM and flash) from per-layer rows, by the rules in the module docstring."""
    if precision == "int8":
        return sum(r.total for r in rows)
    persistent = sum(r.weights + r.update_state + r.constants for r in rows)
    if method == "ff":
        return persistent + max(layer_update_bytes(rows))
    return (persistent + sum(r.gradients for r in rows)
            + max(sum(r.activations for r in rows), max(r.scratch for r in rows)))


def layer_update_bytes(rows: list) -> list:
    """float32 FF: what each layer's update adds to what is live before it (gradients, then the larger of
    its activations and the optimizer's scratch); measured per layer by memory_measure."""
    return [r.gradients + max(r.activations, r.scratch) for r in rows]


def fits(rows: list, sram_budget: int, flash_budget: int) -> bool:
    return sum(r.sram for r in rows) <= sram_budget and sum(r.constants for r in rows) <= flash_budget


def largest_width(method: str, sizes: list, sram_budget: int, flash_budget: int, n_classes: int = 10) -> int:
    """The largest hidden width w for which int8 training (batch 1) of the network with every hidden layer
    w wide (same depth and input as `sizes`) fits the budgets; 0 when not even w = 1 fits."""
    def ok(w):
        shape = [sizes[0]] + [w] * (len(sizes) - 1)
        return fits(layer_memory(method, "int8", shape, 1, n_classes), sram_budget, flash_budget)
    if not ok(1):
        return 0
    lo, hi = 1, 2
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:   # ok(lo) and not ok(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def inference_memory(sizes: list, n_classes: int = 10) -> dict:
    """int8 one-pass inference on a board: weights, biases and constants in flash, two activation buffers
    (the widest input and output of a layer, int8) in SRAM."""
    flash = sum(d_in * d_out + 4 * d_out + 8 * d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))
    flash += sum(sizes[1:]) * n_classes + 12 * n_classes   # one-pass head over every layer's output
    sram = max(d_in + d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)) + sum(sizes[1:])
    return {"sram": sram, "flash": flash}
