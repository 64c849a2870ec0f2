"""Integer-only training of a layered int8 channel-wise competitive (CwC) model: conv blocks trained locally on
their own CwC loss, the last k trainable blocks only (transfer learning as MCUNetV3's sparse update: the
earlier blocks frozen, inference only, with no master weights).

One step on samples (x, y), with no float anywhere:
 1. Forward every layer (the integer inference kernels); a trained block keeps its padded input and its
    output before pooling (its kind's `forward_kept`).
 2. For each trained block, its class goodness G_j (int32, edgeff.runtime.class_goodness) in the common fixed
    point (the model's class_goodness_multiplier / shift) and the CwC loss's dL/dG_j = p_j - [j == y] in Q15
    (edgeff.runtime.cwc_loss: a max-subtracted base-2 softmax with a 256-entry table).
 3. Each trained block's update (`cwc_update`, one call of the active kernel set: the NumPy specification
    edgeff.runtime.conv2d_training, or its C twin for one sample): the exact integer gradient from its own kept
    forward and its own dL/dG, then SGD on the folded block's real filters and biases at step 2^-lr_shift, in
    int16 filter masters and int64 bias masters with 8 fractional bits, rounded stochastically (integer_hash,
    seeded) or to nearest (edgeff/ops/conv2d/runtime.py has the rule and its overflow bound).

FF is local: a block's gradient is made from its input activations (int8, no gradient attached) and its own
loss, so nothing crosses a block boundary (tests/test_conv_training.py changes a later block and sees the same
update of an earlier one). Every block's gradient is taken from the same forward pass before any update, as
the float trainer's one optimizer step. The requantization multipliers, activation scales and padding values
stay as quantized: the host decided the formats. With batch size 1 this is the board's rule; larger batches
sum the exact integer gradients of their samples before the one rounding.
"""
import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.op_registry import layer_facet, trains_cwc_in_integers
from edgeff.runtime.class_goodness import class_goodness, group_values
from edgeff.runtime.cwc_loss import loss_derivative
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import INPUT_ZERO_POINT
from edgeff.runtime.int_training import LR_SHIFT_RANGE, IntTrainingConfig
from edgeff.runtime.requantize import multiply_by_quantized_multiplier

STEP_SHIFT_LIMIT = 62   # lr_shift + a block's step shift: the update's shift stays within int64
NOISE_STREAMS = 64    # per step, as the MLP trainer: layer i draws streams 2i (filters) and 2i + 1 (bias)


def trainable_layers(model: IntLayeredModel) -> list:
    """0-based indices of the layers with parameters (conv2d, dense), the ones --last-k counts."""
    return [i for i, spec in enumerate(model.description.layers) if spec.float_tensors()]


def trained_layers(model: IntLayeredModel, last_k: int | None) -> list:
    """0-based indices of the layers --last-k trains (None: every trainable one), each with the CwC rule;
    EdgeFFError naming what to change otherwise."""
    trainable = trainable_layers(model)
    last_k = len(trainable) if last_k is None else last_k
    if not 1 <= last_k <= len(trainable):
        raise EdgeFFError(f"--last-k {last_k} must be from 1 to {len(trainable)}, the model's trainable layers "
                          f"({', '.join(str(i + 1) for i in trainable)})")
    specs = model.description.layers
    last = trainable[-1]
    if not trains_cwc_in_integers(specs[last].kind):   # every K trains the last one: no --last-k can help
        raise EdgeFFError(f"layer {last + 1} ({specs[last].kind}) has no integer CwC update rule yet, and as the "
                          "model's last trainable layer it trains for every --last-k; the integer rule trains "
                          "models whose trainable layers end in conv2d blocks")
    for i in trainable[-last_k:]:
        if not trains_cwc_in_integers(specs[i].kind):
            raise EdgeFFError(f"layer {i + 1} ({specs[i].kind}) has no integer CwC update rule yet; train fewer "
                              "of the last layers (--last-k) so that only conv2d blocks train")
    return trainable[-last_k:]


def largest_lr_shift(scales: dict) -> int:
    """The largest lr_shift that blocks with these step factors (step_scales') train with: within LR_SHIFT_RANGE,
    and lr_shift plus a block's step shift at most STEP_SHIFT_LIMIT, past which every update rounds to 0."""
    shift = max(max(s.weight_shift, s.bias_shift) for s in scales.values())
    return min(LR_SHIFT_RANGE[1], STEP_SHIFT_LIMIT - shift)


def step_scales(model: IntLayeredModel, trained: list) -> dict:
    """{trained layer: its rule's fixed step factors (update_scales)}, made on the host from the file's float
    scales: the trainer's, and the ones a board image carries (firmware_bridge/board_image.py)."""
    specs, entries = model.description.layers, model.quant["layers"]
    return {i: layer_facet(specs[i], "runtime").update_scales(
        model.layers[i], entries[i]["in_scale"], entries[i]["out_scale"],
        group_values(specs[i].out_shape, model.n_classes)) for i in trained}


class IntLayeredTrainer:
    """Integer training state of an IntLayeredModel: the trained blocks' masters and step factors."""

    TRAIN_METRIC = "train_accuracy"   # the model's decision before each step's update

    def __init__(self, model: IntLayeredModel, config: IntTrainingConfig, last_k: int | None, masters=None,
                 step=0, scales=None):
        """last_k: how many of the last trainable layers train (None: all of them). scales: the trained blocks'
        step factors where they are not made from the model's float scales (a board image's: a board has none)."""
        config.check()
        self.model, self.config, self.step_count = model, config, step
        self.trained = trained_layers(model, last_k)
        self.last_k = len(self.trained)
        specs = model.description.layers
        self.scales = step_scales(model, self.trained) if scales is None else scales
        for i, s in self.scales.items():
            if config.lr_shift + max(s.weight_shift, s.bias_shift) > STEP_SHIFT_LIMIT:
                raise EdgeFFError(f"--lr-shift {config.lr_shift} is too small a step for layer {i + 1}'s integers "
                                  f"(its updates would all round to 0); give at most "
                                  f"{STEP_SHIFT_LIMIT - max(s.weight_shift, s.bias_shift)}")
        if masters is None:
            masters = {i: layer_facet(specs[i], "runtime").initial_masters(model.layers[i]) for i in self.trained}
        self.masters = masters
        self.frac_bits = model.quant["goodness_frac_bits"]

    def _goodness(self, i: int, out: np.ndarray) -> np.ndarray:
        """Layer i's class goodness in the common fixed point, (rows, n_classes)."""
        raw = class_goodness(out, self.model.layers[i].out_zero_point, self.model.n_classes)
        return multiply_by_quantized_multiplier(raw, self.model.class_multiplier[i], self.model.class_shift[i],
                                                self.model.rounding)

    def forward(self, images: np.ndarray) -> tuple[dict, dict]:
        """({trained layer: what its forward kept}, {layer: class goodness}) of the layers that need it."""
        model = self.model
        wanted = set(self.trained) | {l - 1 for l in model.eval_layers}
        q, zero_point, kept, goodness = model.quantize_images(images), INPUT_ZERO_POINT, {}, {}
        for i, (facet, layer) in enumerate(zip(model.facets, model.layers, strict=True)):
            if i in self.trained:
                kept[i] = facet.forward_kept(layer, q, zero_point, model.rounding)
                q = kept[i].out
            else:
                q = facet.forward(layer, q, zero_point, model.rounding)
            zero_point = layer.out_zero_point
            if i in wanted:
                goodness[i] = self._goodness(i, q)
        return kept, goodness

    def step(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """One integer update on a batch (1 sample on a board), each trained block's gradient and update in one
        kernel call of the active kernel set. Returns integer diagnostics."""
        labels = np.asarray(labels)
        kept, goodness = self.forward(images)
        # a block's update reads only its own kept forward, never another block's filters, so updating the blocks
        # one after the other is the same as taking every gradient before any update
        for i in self.trained:
            weight_master, bias_master = self.masters[i]
            layer_facet(self.model.description.layers[i], "runtime").cwc_update(
                self.model.layers[i], kept[i], loss_derivative(goodness[i], labels, self.frac_bits), weight_master,
                bias_master, self.scales[i], self.config.lr_shift, self.config.rounding == "stochastic",
                self.config.seed, self.step_count * NOISE_STREAMS + 2 * i)
        self.step_count += 1
        scores = sum(goodness[l - 1] for l in self.model.eval_layers)
        return {"correct": int((scores.argmax(axis=1) == labels).sum()), "samples": len(labels)}

    def epoch_state(self) -> dict:
        return {"trained_layers": [i + 1 for i in self.trained]}

    def tensors(self) -> dict:
        """Model tensors plus the trained blocks' masters (the frozen blocks have none)."""
        out = self.model.tensors()
        for i, (weight_master, bias_master) in self.masters.items():
            out |= layer_facet(self.model.description.layers[i], "runtime").master_tensors(
                self.model.layers[i], i, weight_master, bias_master)
        return out

    def training_record(self) -> dict:
        """What the model file's int_training header records of the rule."""
        c = self.config
        return {"rule": "cwc", "lr_shift": c.lr_shift, "rounding": c.rounding, "seed": c.seed,
                "last_k": self.last_k, "trained_layers": [i + 1 for i in self.trained]}


def load_layered_trainer(path, config: IntTrainingConfig, last_k: int | None) -> IntLayeredTrainer:
    """An IntLayeredTrainer for an int8 layered model file, continuing from the trained blocks' masters when the
    file has them (an earlier finetune's output)."""
    tensors, header = load_model(path)
    model = IntLayeredModel.from_tensors(tensors, header, where=path)
    trainer = IntLayeredTrainer(model, config, last_k)
    # each trained block continues from its masters where the file has them (a block trained before: its
    # fractional bits), else from its int8 filters; the step count always continues, so the rounding noise does
    # not repeat the earlier run's
    for i in trainer.trained:
        loaded = layer_facet(model.description.layers[i], "runtime").load_masters(model.layers[i], i, tensors, path)
        if loaded is not None:
            trainer.masters[i] = loaded
    trainer.step_count = int((header.get("int_training") or {}).get("step", 0))
    return trainer
