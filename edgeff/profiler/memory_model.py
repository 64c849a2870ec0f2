"""Analytic training memory per layer: Forward-Forward against backprop, float32 (host, torch) and int8 (board).

Each layer's bytes are split by what they hold:
  weights       parameters used by the forward pass (and biases)
  update_state  what the update keeps between steps: Adam's two moments (float32), or the int16 master
                weights and int32 master biases (int8, the integer rule of edgeff.runtime.int_training)
  gradients     gradient buffers: float32 .grad tensors; int8 needs none at batch 1 (each master row is
                updated in place) and int32 accumulators for a batch
  activations   what the layer keeps for its update: FF one positive and one negative pass (2B rows),
                backprop one pass (B rows) but every layer's at once
  backward      float32, layered networks: the gradient maps the layer's backward pass holds at its peak
                beyond its saved activations (0 for an MLP, whose activations include them)
  scratch       temporaries of torch's Adam step (two of the weight matrix's size: sqrt and divide)
  constants     flash: requantization multipliers and shifts (int8)

How the peak follows from them differs with the allocator:
  float32, host (dynamic allocation, measured against edgeff.train.torch_memory):
    FF       = sum(weights + update_state) + max over layers of
               (gradients + max(activations + backward, scratch)),
               since FF trains one layer at a time and frees its graph and gradients before the next;
    backprop = sum(weights + update_state) + sum(gradients)
               + max(max over layers k of (activations of layers 1..k + backward of layer k), max(scratch)),
               since the backward pass runs from the classifier down and frees each layer's saved tensors
               once that layer is done: at layer k's backward every layer below k still holds its own.
    An MLP (the label overlay's FF, positive and negative pass) counts its activations as dense.cost
    describes; backprop's classifier keeps its logits and log-probabilities, and one gradient of the widest
    layer is in flight (counted on the first layer).
    A layered network (conv blocks; trained as edgeff.train.conv_network and measured as
    edgeff.train.torch_memory do: FF with CwC on each layer's detached input, backprop through the softmax
    head) counts per tensor (saved_tensors, checked against autograd's saved-tensor hooks by
    edgeff.train.saved_tensors): activations = the bytes of the tensors autograd saves, each once (a
    tensor two ops save, or the next layer saves again, counts for the first); backward = the gradient
    maps alive at the peak of the layer's backward pass beyond them (each kind's float32_backward).
    FF adds, per trained layer, its CwC loss: the goodness's saved input (the layer's output, unless the
    layer saved it already), the cross-entropy's log-softmax output, int64 targets and total weight, and
    the goodness's backward (three output-sized maps: the mean's gradient and the two products of the
    square's). Backprop's classifier saves its normalization's tensors and the cross-entropy's.
  int8, board (static buffers, the firmware's layout): everything is allocated at once, so the peak is
    the sum. FF's buffers are edgeff.runtime.memory_plan's (batch 1; activations scale with the batch)
    where every layer's kind runs in the integer runtime, and an int8 layered CwC model's FF and backprop of
    its last k blocks at batch 1 are edgeff.runtime.memory_plan.layered_training_plan's (cwc_plans, from the
    int8 model file: explicit padding and the trained blocks follow the file); a float conv model, or a
    batch above 1, is estimated from the cost facets (int8_parameters, int8_ff_memory): an estimate, not a plan.
    Backprop keeps the same weights, masters and constants per layer, plus a classifier layer, each
    layer's int8 output for the backward pass and its int32 error (delta).
What each layer kind holds is its cost facet's (edgeff/ops/<kind>/cost.py, through edgeff.op_registry).
"""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.op_registry import trains_in_integers
from edgeff.profiler.layers import classifier, cost, description
from edgeff.runtime.memory_plan import layered_training_plan, training_plan

FLOAT = 4
INDEX = 8    # int64 class targets
METHODS = ("ff", "backprop")
PRECISIONS = ("float32", "int8")
SRAM_FIELDS = ("weights", "update_state", "gradients", "activations", "backward", "scratch")


@dataclass
class LayerMemory:
    name: str
    weights: int = 0
    update_state: int = 0
    gradients: int = 0
    activations: int = 0
    backward: int = 0
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


def _check(method, precision, layers, batch) -> ModelDescription:
    if method not in METHODS:
        raise EdgeFFError(f"unknown training method '{method}'; use one of {METHODS}")
    if precision not in PRECISIONS:
        raise EdgeFFError(f"unknown precision '{precision}'; use one of {PRECISIONS}")
    model = description(layers)
    if batch < 1:
        raise EdgeFFError(f"batch size {batch} must be at least 1")
    return model


def layered(model: ModelDescription) -> bool:
    """Whether a network has image-shaped layers (conv blocks), which edgeff trains with CwC; an MLP's FF
    is the label overlay's."""
    return any(len(spec.in_shape) > 1 for spec in model.layers)


def _trained(spec) -> bool:
    return sum(cost(spec).gradient_elements(spec)) > 0


def _cross_entropy(batch: int, n_classes: int) -> dict:
    """What F.cross_entropy saves: the log-softmax output (NLL's saved input is the same tensor), the int64
    targets and NLL's total weight (a scalar)."""
    return {"log-softmax output": FLOAT * batch * n_classes, "targets": INDEX * batch, "total weight": FLOAT}


def saved_tensors(method: str, layers, batch: int = 1, n_classes: int = 10) -> list:
    """float32 training of a layered network: per layer (backprop: and its classifier, last), the bytes of
    each tensor autograd saves for the backward pass, by name, and the bytes of the gradient maps that
    layer's backward pass holds beyond them: a list of (saved, backward)."""
    model = _check(method, "float32", layers, batch)
    out, input_saved, input_grad = [], False, False
    for spec in model.layers:
        facet = cost(spec)
        if method == "ff":   # every layer its own graph on its detached input
            saved, output_saved = facet.float32_saved(spec, batch, False, False)
            backward = facet.float32_backward(spec, batch, False)
            if _trained(spec):
                if not output_saved:
                    saved["goodness input"] = FLOAT * batch * spec.n_outputs
                saved.update(_cross_entropy(batch, n_classes))
                backward = max(backward, 3 * FLOAT * batch * spec.n_outputs)
        else:
            saved, input_saved = facet.float32_saved(spec, batch, input_grad, input_saved)
            backward = facet.float32_backward(spec, batch, input_grad)
            input_grad = input_grad or _trained(spec)
        out.append((saved, backward))
    if method == "backprop":
        head = classifier(model.layers[-1].n_outputs, n_classes)
        saved, _ = cost(head).float32_saved(head, batch, input_grad, input_saved)
        del saved["relu output"]    # the classifier's logits go to the loss, not through a ReLU
        out.append(({**saved, **_cross_entropy(batch, n_classes)}, cost(head).float32_backward(head, batch, True)))
    return out


def _float32_layers(method: str, model: ModelDescription, batch: int, n_classes: int) -> list:
    rows = [LayerMemory(f"layer {i + 1}", **cost(spec).float32_memory(spec, method, batch))
            for i, spec in enumerate(model.layers)]
    if layered(model):
        if method == "backprop":
            head = classifier(model.layers[-1].n_outputs, n_classes)
            rows.append(LayerMemory("classifier", **cost(head).float32_memory(head, method, batch)))
        for row, (saved, backward) in zip(rows, saved_tensors(method, model, batch, n_classes), strict=True):
            row.activations, row.backward = sum(saved.values()), backward
        return rows
    if method == "backprop":
        rows[0].activations += FLOAT * batch * max(spec.n_outputs for spec in model.layers)
        head = classifier(model.layers[-1].n_outputs, n_classes)
        rows.append(LayerMemory("classifier", **{**cost(head).float32_memory(head, method, batch),
                                                 "activations": FLOAT * batch * 2 * n_classes}))
    return rows


def planned(model: ModelDescription) -> bool:
    """Whether the runtime's memory plan lays out this network (every kind trains in integers)."""
    return all(trains_in_integers(spec.kind) for spec in model.layers)


def _int8_layers_estimated(method: str, model: ModelDescription, batch: int, n_classes: int) -> list:
    """int8 rows of a network the memory plan does not lay out, from each kind's cost facet: every layer's
    parameters, masters and constants; for FF, which updates one layer at a time, one set of update buffers
    the size of the largest layer's (int8_ff_memory, in the shared row); for backprop every layer's output
    and error at once (int8_backprop_memory) and its classifier."""
    shared = LayerMemory("shared", activations=batch * model.layers[0].n_inputs)    # the uint8 input
    specs = list(model.layers)
    if method == "backprop":
        specs.append(classifier(model.layers[-1].n_outputs, n_classes))
    rows = []
    for i, spec in enumerate(specs):
        rows.append(LayerMemory(f"layer {i + 1}" if i < len(model.layers) else "classifier",
                                **cost(spec).int8_parameters(spec)))
        if method == "backprop":
            for field, size in cost(spec).int8_backprop_memory(spec, batch).items():
                setattr(rows[-1], field, size)
    if method == "ff":
        updates = [cost(spec).int8_ff_memory(spec, batch) for spec in model.layers]
        widest = max(updates, key=lambda u: sum(u.values()))
        shared.activations += widest["activations"]
        shared.scratch, shared.gradients = widest["scratch"], widest["gradients"]
    return [shared, *rows]


def cwc_plans(model_path, last_k=None) -> dict:
    """The memory plans of an int8 layered CwC model file training its last k blocks (None: all), FF and
    backprop of the same blocks: {"trained_layers": 1-based, "ff": plan, "backprop": plan}. A k the trainer
    refuses is refused here in its words."""
    from edgeff.runtime.int_layered import IntLayeredModel
    from edgeff.runtime.int_layered_training import trained_layers

    model = IntLayeredModel.from_file(model_path)
    trained = trained_layers(model, last_k)
    return {"trained_layers": [i + 1 for i in trained],
            **{method: layered_training_plan(model, trained, method) for method in METHODS}}


def plan_rows(plan: list, n_layers: int) -> list:
    """int8 rows of a memory plan: a shared row, one per layer and (backprop) the classifier; flash buffers are
    constants, SRAM buffers count under their role."""
    rows = [LayerMemory("shared")] + [LayerMemory(f"layer {k}") for k in range(1, n_layers + 1)]
    if any(buf.layer > n_layers for buf in plan):
        rows.append(LayerMemory("classifier"))
    for buf in plan:
        field = "constants" if buf.region == "flash" else buf.role
        setattr(rows[buf.layer], field, getattr(rows[buf.layer], field) + buf.bytes)
    return rows


def _int8_layers(method: str, model: ModelDescription, batch: int, n_classes: int, head_layers, norm_bits) -> list:
    if not planned(model):
        return _int8_layers_estimated(method, model, batch, n_classes)
    sizes = model.sizes
    plan = training_plan(sizes, n_classes, head_layers or [len(sizes) - 1], norm_bits)
    rows = [LayerMemory("shared")] + [LayerMemory(f"layer {k}") for k in range(1, len(model.layers) + 1)]
    for buf in plan:
        if method == "backprop" and (buf.layer == 0 or buf.role == "activations" or "goodness" in buf.name):
            continue    # backprop keeps its own activations; no goodness, coupling, sigmoid table or FF head
        row = rows[buf.layer]
        scale = batch if buf.role == "activations" else 1
        field = "constants" if buf.region == "flash" else buf.role
        setattr(row, field, getattr(row, field) + buf.bytes * scale)
    if method == "ff":
        # a batch sums its int32 gradients before one update, one layer at a time: one accumulator
        weights, biases = zip(*(cost(spec).gradient_elements(spec) for spec in model.layers), strict=True)
        rows[0].gradients = 4 * (max(weights) + max(biases)) if batch > 1 else 0
        return rows
    rows[0].activations = batch * model.layers[0].n_inputs             # the input image(s), uint8
    head = classifier(model.layers[-1].n_outputs, n_classes)
    rows.append(LayerMemory("classifier", **cost(head).int8_parameters(head)))
    for row, spec in zip(rows[1:], [*model.layers, head], strict=True):
        for field, size in cost(spec).int8_backprop_memory(spec, batch).items():
            setattr(row, field, size)
    return rows


def layer_memory(method: str, precision: str, layers, batch: int = 1, n_classes: int = 10,
                 head_layers=None, norm_bits=None) -> list:
    """Per-layer training memory (a list of LayerMemory; int8 has a leading 'shared' row) of a model
    description, or of an FF MLP given by its sizes."""
    model = _check(method, precision, layers, batch)
    if precision == "float32":
        return _float32_layers(method, model, batch, n_classes)
    return _int8_layers(method, model, batch, n_classes, head_layers, norm_bits)


def peak_bytes(method: str, precision: str, rows: list) -> int:
    """Peak training memory (SRAM and flash) from per-layer rows, by the rules in the module docstring."""
    if precision == "int8":
        return sum(r.total for r in rows)
    persistent = sum(r.weights + r.update_state + r.constants for r in rows)
    if method == "ff":
        return persistent + max(layer_update_bytes(rows))
    below, backward_peak = 0, 0
    for r in rows:   # layer k's backward: its own and every layer's below it saved tensors, its gradient maps
        below += r.activations
        backward_peak = max(backward_peak, below + r.backward)
    return persistent + sum(r.gradients for r in rows) + max(backward_peak, max(r.scratch for r in rows))


def layer_update_bytes(rows: list) -> list:
    """float32 FF: what each layer's update adds to what is live before it (gradients, then the larger of
    its activations with its backward pass's gradient maps and the optimizer's scratch); measured per layer
    by memory_measure."""
    return [r.gradients + max(r.activations + r.backward, r.scratch) for r in rows]


def fits(rows: list, sram_budget: int, flash_budget: int) -> bool:
    return sum(r.sram for r in rows) <= sram_budget and sum(r.constants for r in rows) <= flash_budget


def largest_width(method: str, layers, sram_budget: int, flash_budget: int, n_classes: int = 10) -> int:
    """The largest hidden width w for which int8 training (batch 1) of an FF MLP with every hidden layer
    w wide (same depth and input as `layers`) fits the budgets; 0 when not even w = 1 fits."""
    model = description(layers)

    def ok(w):
        shape = [model.layers[0].n_inputs] + [w] * len(model.layers)
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


def inference_memory(layers, n_classes: int = 10) -> dict:
    """int8 one-pass inference on a board: weights, biases and constants in flash, two activation buffers
    (the widest input and output of a layer, int8) and every layer's output for the one-pass head in SRAM."""
    model = description(layers)
    per_layer = [cost(spec).inference_memory(spec) for spec in model.layers]
    head = classifier(sum(spec.n_outputs for spec in model.layers), n_classes)
    flash = sum(m["flash"] for m in per_layer) + cost(head).inference_memory(head)["flash"]
    sram = max(m["sram"] for m in per_layer) + head.n_inputs
    return {"sram": sram, "flash": flash}
