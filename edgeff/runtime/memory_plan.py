"""The memory plan of on-device FF training: every buffer a board needs, with its exact size in bytes.

Laid out as the firmware lays it out. SRAM holds what changes while training (int8 weights used by the
forward pass, int16 master weights, int32 biases and their masters, the collaboration gamma) and what
one training step computes (the input, and per layer the normalized input and the output of one
positive and one negative pass, plus their goodness). Flash holds what training never changes (the
requantization multipliers and shifts, goodness rescaling, the sigmoid table and the one-pass head).
The weight update needs no buffer: each master row is updated from (e * activity_j) and the stored
normalized inputs as it is visited. Each layer's buffers are its kind's (the board_image facet's
training_buffers, through edgeff.op_registry); this module adds what the whole network shares.

A layered int8 CwC model (conv blocks; edgeff.runtime.int_layered_training trains its last k blocks) is laid
out by layered_training_plan, FF or backprop of the same blocks, batch 1, as static buffers (a firmware's
layout: each buffer sized for the largest of the tensors that take turns in it). Per layer kind, its runtime
facet's training_shapes and training_buffers (a conv block has no board image, so no board_image facet):
  frozen blocks   filters, bias, multipliers, shifts and pad values in flash; they run inference only
  trained blocks  int8 filters and int32 bias with int16 filter masters and int64 bias masters in SRAM, the
                  rule's step factors and class goodness rescaling in flash
  activations     a_0 (the image, quantized in place to int8 where the first layer reads it unpadded) to a_n,
                  each written by its layer in the form the next layer reads it (padded explicitly with the
                  pad values where the next block pads so: the layer writes the interior).
    FF            two buffers taking turns (a_j in ping for even j, pong for odd), one pre-pool buffer that
                  every pooled block's convolution output takes in turn (pooled from there into its turn): FF
                  finishes a trained block (forward keeping its input, pre-pool and output, goodness, dL/dG,
                  update) before the next block's forward, which is the trainer's bits (the next block reads
                  the output made before the update; every stream of noise is the block's own), so one block's
                  kept tensors are alive at a time
    backprop      the frozen prefix takes turns as FF's, but from the first trained block's input on every a_j
                  and every trained block's pre-pool output are kept until the backward pass reaches them; a
                  frozen pooled block writes its convolution output into its output's buffer and pools it there
                  in place (safe in row-major order: each pooled value lands at or before its window's first)
  the update      per filter row, as the rule allows (noise is drawn per element position, so row by row is the
                  same bits): FF's dL/da at a kept position is e_j(o) (a - zp) from the kept output and the
                  class's dL/dG (no map), its row gradient one row's int32 sums times e_j(o) (runtime facet's
                  docstring); backprop's error is a map per position, so it keeps an int32 error map per
                  activation (two taking turns, the output's and the input's of the block in its backward) and
                  sums its row in int64
  shared          the class goodness and dL/dG (FF, one block at a time) or the classifier's logits and dL/dz
                  (backprop: a dense classifier on the last output, with its masters as the MLP's dense rule),
                  the softmax's 256-entry Q15 table (uint16, flash), and the convolution's scratch of the
                  Cortex-M DSP path (ef_conv2d_s8_scratch_bytes; the portable path of a core without DSP, e.g. a
                  Cortex-M0+, needs none, so there the plan is high by that buffer). Backward kernels' own
                  scratch is not planned (no board kernel exists yet). What the trainer computes for its train
                  accuracy (the goodness of the evaluation layers) is not a step's and not planned.
"""
from dataclasses import asdict, dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.op_registry import facet, layer_facet, spec_class
from edgeff.runtime.int_model import INPUT_ZERO_POINT


@dataclass
class Buffer:
    name: str
    region: str       # "sram" or "flash"
    dtype: str
    shape: tuple
    role: str         # "weights", "update_state" (master weights), "activations", "constants" or "scratch"
    layer: int = 0    # 1-based FF layer the buffer belongs to; 0 for buffers the whole network shares

    @property
    def bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


# the kind whose layers on-device training runs: a board trains FF MLPs of dense layers (the board image's kind)
TRAINED_KIND = "dense"


def training_plan(sizes: list, n_classes: int, head_layers: list, norm_bits=None) -> list:
    """Buffers of one integer training step (batch size 1, positive + negative pass) of the FF MLP `sizes`.
    norm_bits per layer: 7 (int8 normalized inputs, the default) or 15 (int16, 16x8 mode)."""
    n = len(sizes) - 1
    norm_bits = norm_bits or [7] * n
    plan = [Buffer("input image", "sram", "uint8", (sizes[0],), "activations"),
            Buffer("gamma (Q8)", "sram", "int32", (n,), "update_state")]
    dense = spec_class(TRAINED_KIND)
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        plan += facet(TRAINED_KIND, "board_image").training_buffers(dense(d_in, d_out), i + 1, norm_bits[i])
    d_head = sum(sizes[l] for l in head_layers)
    plan += [Buffer("sigmoid table Q15", "flash", "int16", (256,), "constants"),
             Buffer("head weights int8", "flash", "int8", (n_classes, d_head), "constants"),
             Buffer("head bias, multiplier, shift", "flash", "int32", (3, n_classes), "constants")]
    return plan


def plan_summary(plan: list) -> dict:
    rows = [{**asdict(b), "shape": list(b.shape), "bytes": b.bytes} for b in plan]
    return {"buffers": rows,
            "sram_bytes": sum(b.bytes for b in plan if b.region == "sram"),
            "flash_bytes": sum(b.bytes for b in plan if b.region == "flash")}


def nhwc(shape: tuple) -> tuple:
    """A (C, H, W) activity as the integer runtime holds it, (H, W, C); a flat one as it is."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape)


def parameterless_shapes(spec) -> dict:
    """training_shapes of a layer with no parameters and no scratch (maxpool2d, flatten)."""
    return {"input": nhwc(spec.in_shape), "conv": None, "output": nhwc(spec.out_shape), "scratch": 0,
            "gradient_row": 0}


LAYERED_METHODS = ("ff", "backprop")
SOFTMAX_TABLE = Buffer("softmax table 2^(-i/256) Q15", "flash", "uint16", (256,), "constants")


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _slots(name: str, users: dict) -> list:
    """int8 buffers taking turns: users {label: bytes} of each turn ("ping", "pong"), one buffer per turn,
    sized for its largest user."""
    return [Buffer(f"{name} {turn} ({', '.join(labels)})", "sram", "int8", (max(labels.values()),), "activations")
            for turn, labels in users.items() if labels]


def layered_training_plan(model, trained: list, method: str = "ff") -> list:
    """Buffers of one integer training step (batch 1) of the layered int8 model `model`
    (edgeff.runtime.int_layered.IntLayeredModel) whose layers `trained` (0-based conv blocks, the trainer's) train:
    "ff", each on its own CwC loss as edgeff.runtime.int_layered_training, or "backprop", the same blocks
    through a classifier (module docstring). "ff" with no block trained is the buffers of inference alone."""
    if method not in LAYERED_METHODS:
        raise EdgeFFError(f"unknown training method {method!r}; use one of {LAYERED_METHODS}")
    specs, layers, n = model.description.layers, model.layers, len(model.layers)
    zero_points = [INPUT_ZERO_POINT] + [layer.out_zero_point for layer in layers[:-1]]
    steps = [layer_facet(spec, "runtime").training_shapes(spec, layer, zp)
             for spec, layer, zp in zip(specs, layers, zero_points, strict=True)]
    image = nhwc(model.description.input_shape)
    plan = [Buffer("input image", "sram", "uint8", image, "activations")]
    for i, spec in enumerate(specs):
        plan += layer_facet(spec, "runtime").training_buffers(spec, i, i in trained)
    # a_j's bytes as its writer leaves it (the next layer's input form; a frozen pooled block pools in place)
    size = {0: _size(steps[0]["input"])}
    for j in range(1, n + 1):
        size[j] = _size(steps[j]["input"]) if j < n else _size(steps[-1]["output"])
        if method == "backprop" and steps[j - 1]["conv"] is not None and j - 1 not in trained:
            size[j] = max(size[j], _size(steps[j - 1]["conv"]))
    label = {j: f"layer {j + 1} input" if j < n else f"layer {n} output" for j in size}
    in_image = size[0] == _size(image)     # the image quantized in place is a_0
    if not trained and method != "ff":
        raise EdgeFFError("backprop trains at least one block; give the blocks that train")
    first = min(trained, default=n)
    turns = {"ping": {}, "pong": {}}
    for j in range(n + 1 if method == "ff" else first):   # backprop keeps every a_j from the first trained input on
        if j or not in_image:
            turns["ping" if j % 2 == 0 else "pong"][label[j]] = size[j]
    plan += _slots("activations", turns)
    pooled = [i for i, step in enumerate(steps) if step["conv"] is not None]
    rows = max((steps[i]["gradient_row"] for i in trained), default=0)
    if method == "ff":
        plan += _slots("pre-pool output", {"of one block": {f"layer {i + 1}": _size(steps[i]["conv"])
                                                           for i in pooled}})
        plan += [Buffer("class goodness", "sram", "int32", (model.n_classes,), "activations"),
                 Buffer("dL/dG Q15", "sram", "int32", (model.n_classes,), "activations")]
        if rows:   # no block trains (a board holding a model to infer with): no update, no row sums
            plan.append(Buffer("filter row gradient sums", "sram", "int32", (rows,), "scratch"))
    else:
        for j in range(first, n + 1):
            tensor = steps[j]["input"] if j < n else steps[-1]["output"]
            if j or not in_image:   # its tensor's shape, or its bytes where a frozen block pools in it
                plan.append(Buffer(f"{label[j]} (kept)", "sram", "int8",
                                   tensor if _size(tensor) == size[j] else (size[j],), "activations", min(j + 1, n)))
        plan += [Buffer(f"layer {i + 1} pre-pool output (kept)", "sram", "int8", steps[i]["conv"], "activations",
                        i + 1) for i in pooled if i in trained]
        errors = {"ping": {}, "pong": {}}
        for j in range(first + 1, n + 1):
            errors["ping" if j % 2 == 0 else "pong"][f"dL/d {label[j]}"] = _size(steps[j - 1]["output"])
        plan += [Buffer(f"error map int32 {turn} ({', '.join(labels)})", "sram", "int32", (max(labels.values()),),
                        "activations") for turn, labels in errors.items() if labels]
        plan += _classifier(_size(steps[-1]["output"]), model.n_classes, n + 1)
        plan.append(Buffer("filter row gradient sums", "sram", "int64", (rows,), "scratch"))
    scratch = max(step["scratch"] for step in steps)
    if scratch:
        plan.append(Buffer("convolution scratch (Cortex-M DSP path)", "sram", "int8", (scratch,), "scratch"))
    return [*plan, SOFTMAX_TABLE]


def _classifier(d_in: int, n_classes: int, layer: int) -> list:
    """Backprop's dense classifier on the last output, trained with the MLP's dense rule (int8 inputs: int32
    bias and bias master), its logits and their dL/dz in Q15."""
    p = "classifier "
    return [Buffer(p + "weights int8", "sram", "int8", (n_classes, d_in), "weights", layer),
            Buffer(p + "master weights int16", "sram", "int16", (n_classes, d_in), "update_state", layer),
            Buffer(p + "bias", "sram", "int32", (n_classes,), "weights", layer),
            Buffer(p + "master bias", "sram", "int32", (n_classes,), "update_state", layer),
            Buffer(p + "multiplier + shift", "flash", "int32", (2, n_classes), "constants", layer),
            Buffer(p + "logits", "sram", "int32", (n_classes,), "activations", layer),
            Buffer(p + "dL/dz Q15", "sram", "int32", (n_classes,), "activations", layer)]
