"""The model a board holds, per board-image format: what BoardCore (firmware_bridge/board.py) asks of it.

BoardCore speaks the protocol (frames, loads, staging, run state, checkpoints); what the request means for the
model it holds depends on the image's format byte (PROTOCOL.md, "Board image" and "Format 2 over the link"):

    install(image, memory)        check an image fully and its training memory against the board's; the model
    model.record_size             bytes of a sample record (label, negative label, the model's input bytes)
    model.configure(payload)      the CONFIGURE settings: a trainer at the image's step (ProtocolError if refused)
    model.check_labels(l, n)      a staged record's labels (BAD_RANGE: no restaging mends them)
    model.train(l, n, image)      one integer step on one sample; 1 when the model's decision before it was right
    model.infer(image)            (decision, the one-pass head's class, the decision's int32 scores per class)
    model.current_image()         the image as trained so far (READ, checkpoints)

DenseModel is an FF MLP (format 1: edgeff.runtime.int_training's rule), LayeredModel a layered CwC model (format
2: edgeff.runtime.int_layered_training's, on the trained blocks the image holds masters for).
"""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime.int_layered_training import IntLayeredTrainer, largest_lr_shift
from edgeff.runtime.int_training import (
    LR_SHIFT_RANGE,
    IntTrainingConfig,
    LossConstants,
    trainer_from_tensors,
    trainer_tensors,
)
from edgeff.runtime.memory_plan import layered_training_plan, plan_summary, training_plan
from firmware_bridge import messages as m
from firmware_bridge.board_image import layered_state, pack_image, trained_in_place, unpack_image

WORKING_ROLES = ("activations", "scratch")   # a layered plan's buffers that are not the image's arrays


class ProtocolError(Exception):
    """A request the board answers with an ERROR frame."""

    def __init__(self, code: m.ErrorCode, message: str, detail: int = 0):
        super().__init__(message)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Memory:
    """What a board gives models: SRAM and flash bytes, and the name its refusals give."""
    sram: int
    flash: int
    name: str


def install(image: bytes, memory: Memory):
    """The model of a board image, checked fully (format, integer model, masters, memory), untrained and
    unconfigured; ProtocolError BAD_MODEL or NO_MEMORY otherwise. The format byte picks the model."""
    fmt = image[4] if len(image) > 4 else None
    return (LayeredModel if fmt == m.LAYERED_MODEL_FORMAT else DenseModel)(image, memory)


def _sample_labels_error(label: int, negative: int, why: str) -> ProtocolError:
    # the record arrived intact, so its content is wrong: BAD_RANGE, which no restaging can mend
    return ProtocolError(m.ErrorCode.BAD_RANGE, f"sample labels {label}, {negative}: {why}", label << 8 | negative)


class _BoardModel:
    """What both formats share: inference with the model's own methods, and the image of the current training
    state, packed once per state (READ asks for it chunk by chunk)."""

    def infer(self, image: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(decision, the one-pass head's class, the decision's scores per class) of one image (IntFFModel and
        IntLayeredModel have the same two methods)."""
        scores = self.inference.multi_pass_scores(image)[0]
        return int(scores.argmax()), int(self.inference.head_logits(image).argmax(axis=1)[0]), scores

    def current_image(self) -> bytes:
        if self.trainer is None:
            return self.image
        if self._current is None:
            self._current = self._trained_image()
        return self._current


class DenseModel(_BoardModel):
    """An FF MLP (format 1), trained with edgeff.runtime.int_training's rule. Installed with master weights: an
    image without them gets them as the trainer starts them."""

    def __init__(self, image: bytes, memory: Memory):
        try:
            tensors, header = unpack_image(image)
            trainer = trainer_from_tensors(tensors, header, IntTrainingConfig(), "board image")
        except EdgeFFError as exc:
            raise ProtocolError(m.ErrorCode.BAD_MODEL, str(exc)) from None
        arch = header["architecture"]
        norm_bits = [layer["norm_bits"] for layer in header["quantization"]["layers"]]
        plan = plan_summary(training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"], norm_bits))
        if plan["sram_bytes"] > memory.sram or plan["flash_bytes"] > memory.flash:
            raise ProtocolError(m.ErrorCode.NO_MEMORY,
                                f"model needs {plan['sram_bytes']} B SRAM and {plan['flash_bytes']} B flash to "
                                f"train; {memory.name} has {memory.sram} B and {memory.flash} B",
                                plan["sram_bytes"])
        self.tensors, self.header = trainer_tensors(trainer), header
        self.image = pack_image(self.tensors, header)
        self.inference, self.trainer = trainer.model, None
        self.sram_bytes = plan["sram_bytes"]
        self.n_classes = self.inference.n_classes
        self.record_size = 2 + arch["sizes"][0]     # label, negative label (or NO_NEGATIVE), image
        self._current = None

    def configure(self, payload: bytes):
        _, lr_shift, gamma_shift, loss, negatives, rounding, seed, mult, shift, theta = m.CONFIGURE.unpack(payload)
        if loss >= len(m.LOSSES) or negatives >= len(m.NEGATIVES) or rounding >= len(m.ROUNDINGS):
            raise ProtocolError(m.ErrorCode.BAD_RANGE, "loss, negatives or rounding code out of range")
        if not (mult == 0 or 1 << 30 <= mult < 1 << 31) or not -31 <= shift <= 30:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, "sigmoid argument multiplier or shift out of range")
        config = IntTrainingConfig(lr_shift=lr_shift, gamma_shift=gamma_shift, loss=m.LOSSES[loss],
                                   negatives=m.NEGATIVES[negatives], rounding=m.ROUNDINGS[rounding], seed=seed)
        try:
            self.trainer = trainer_from_tensors(self.tensors, self.header, config, "board image",
                                                LossConstants(mult, shift, theta))
        except EdgeFFError as exc:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, str(exc)) from None
        self.inference, self._current = self.trainer.model, None

    def check_labels(self, label: int, negative: int):
        n = self.n_classes
        if label >= n or (negative != m.NO_NEGATIVE and negative >= n):
            raise _sample_labels_error(label, negative, f"a label outside the model's classes 0..{n - 1}")
        if negative == label:
            raise _sample_labels_error(label, negative, "the negative label equals the label")

    def train(self, label: int, negative: int, image: np.ndarray) -> int:
        self._current = None
        result = self.trainer.step(image, np.array([label]),
                                   None if negative == m.NO_NEGATIVE else np.array([negative]))
        return result["correct"]

    def _trained_image(self) -> bytes:
        header = {**self.header, "int_training": {"step": self.trainer.step_count}}
        return pack_image(trainer_tensors(self.trainer), header)


class LayeredModel(_BoardModel):
    """A layered CwC model (format 2), trained with edgeff.runtime.int_layered_training's rule on the blocks whose
    masters the image holds, with the image's step factors. The image is installed as sent (no byte changes) and
    trained in place: READ gives it with the trained blocks' arrays and the step as they are now."""

    def __init__(self, image: bytes, memory: Memory):
        try:
            self.inference, self.masters, self.scales, self.step = layered_state(image)
        except EdgeFFError as exc:
            raise ProtocolError(m.ErrorCode.BAD_MODEL, str(exc)) from None
        self.trained = sorted(self.masters)
        plan = layered_training_plan(self.inference, self.trained, "ff")
        working = sum(b.bytes for b in plan if b.region == "sram" and b.role in WORKING_ROLES)
        needed = len(image) + working
        if needed > memory.sram:
            raise ProtocolError(m.ErrorCode.NO_MEMORY,
                                f"model needs {needed} B of RAM to train ({len(image)} B image, {working} B working "
                                f"buffers); {memory.name} has {memory.sram} B", needed)
        self.image, self.sram_bytes, self.trainer = image, needed, None
        self.n_classes = self.inference.n_classes
        self.record_size = 2 + self.inference.description.layers[0].n_inputs
        self._current = None

    def configure(self, payload: bytes):
        _, lr_shift, gamma_shift, loss, negatives, rounding, seed, mult, shift, theta = m.CONFIGURE.unpack(payload)
        if not self.trained:
            raise ProtocolError(m.ErrorCode.BAD_STATE, "the model has no trained block (no block carries master "
                                "weights): it infers but does not train")
        if gamma_shift or loss or negatives or mult or shift or theta:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, "gamma_shift, loss, negatives, the sigmoid multiplier and "
                                "shift and theta must be 0: a CwC model has none of them")
        if rounding >= len(m.ROUNDINGS):
            raise ProtocolError(m.ErrorCode.BAD_RANGE, "rounding code out of range")
        largest = largest_lr_shift(self.scales)
        if not LR_SHIFT_RANGE[0] <= lr_shift <= largest:
            raise ProtocolError(m.ErrorCode.BAD_RANGE, f"lr_shift {lr_shift} must be from {LR_SHIFT_RANGE[0]} to "
                                f"{largest} for this model", largest)
        config = IntTrainingConfig(lr_shift=lr_shift, rounding=m.ROUNDINGS[rounding], seed=seed)
        # the trainer updates the model and masters in place, as the firmware does: BoardCore refuses another
        # CONFIGURE once a sample was applied, so a second trainer only ever starts from the image as installed
        self.trainer = IntLayeredTrainer(self.inference, config, len(self.trained), self.masters, self.step,
                                         self.scales)
        self._current = None

    def check_labels(self, label: int, negative: int):
        if label >= self.n_classes:
            raise _sample_labels_error(label, negative, f"a label outside the model's classes 0..{self.n_classes - 1}")
        if negative != m.NO_NEGATIVE:
            raise _sample_labels_error(label, negative, f"a CwC step takes no negative label (send {m.NO_NEGATIVE})")

    def train(self, label: int, negative: int, image: np.ndarray) -> int:
        self._current = None
        return self.trainer.step(image, np.array([label]))["correct"]

    def _trained_image(self) -> bytes:
        return trained_in_place(self.image, self.trainer.tensors(), self.trainer.step_count)
