"""On-device training over the link: stream samples to a board, resume after any failure, pull the result.

The host numbers every sample of the run (sample p is sample order[p mod n] of epoch p div n, orders
seeded as in `edgeff finetune`) and sends sample p only as TRAIN(p): the board applies it only when p is
exactly the count it has applied, so a resent or stale sample is never applied twice, and after a reboot
the board's checkpointed count tells the host where to go on. The run id (a CRC of the model image, the
training settings and the sample stream) tells whether the board holds this run or must start it.

An FF MLP goes as a format-1 image of the model file's tensors (the board adds master weights); a layered CwC
(conv) model as the format-2 image of its IntLayeredTrainer on the last --last-k trainable blocks, whose masters
tell the board which blocks train (PROTOCOL.md, "Format 2 over the link").
"""
import struct
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import is_layered, load_model, save_model
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer, load_layered_trainer
from edgeff.runtime.int_model import check_mlp
from edgeff.runtime.int_training import (
    IntTrainingConfig,
    load_trainer,
    loss_constants,
    trainer_from_tensors,
    trainer_tensors,
)
from firmware_bridge import messages as m
from firmware_bridge.board_image import merge_header, pack_image, unpack_image
from firmware_bridge.driver import BoardError, BoardLink, LinkDead, LinkReset
from firmware_bridge.framing import crc32

RECENT = 500


@dataclass
class SampleStream:
    """The run's samples in order: `epochs` passes over `n` samples of (images, labels)."""
    images: np.ndarray
    labels: np.ndarray
    n: int
    epochs: int = 1
    seed: int = 0
    host_negatives: bool = False    # send a random wrong label with each sample instead of letting the board draw
    n_classes: int = 10
    orders: list = field(init=False)

    def __post_init__(self):
        if not 1 <= self.n <= len(self.images) or self.epochs < 1:
            raise EdgeFFError(f"samples per epoch must be 1..{len(self.images)} and epochs at least 1")
        self.orders = [np.random.default_rng([self.seed, e]).permutation(len(self.images))[:self.n]
                       for e in range(self.epochs)]

    def __len__(self):
        return self.n * self.epochs

    def sample(self, p: int) -> tuple[int, int]:
        """(index into images, negative label or NO_NEGATIVE) of sample p."""
        epoch, pos = divmod(p, self.n)
        index = int(self.orders[epoch][pos])
        if not self.host_negatives:
            return index, m.NO_NEGATIVE
        offset = np.random.default_rng([self.seed, epoch, 1]).integers(1, self.n_classes, self.n)[pos]
        return index, int((self.labels[index] + offset) % self.n_classes)

    def record(self, p: int) -> bytes:
        index, negative = self.sample(p)
        return bytes([int(self.labels[index]), negative]) + self.images[index].tobytes()

    def identity(self) -> bytes:
        return struct.pack("<IIIB", self.n, self.epochs, self.seed, self.host_negatives) + \
            struct.pack("<II", crc32(self.images.tobytes()), crc32(self.labels.astype(np.uint8).tobytes()))


def configure_payload(config: IntTrainingConfig, goodness_frac_bits: int, run_id: int = 0,
                      model_format: int = m.MODEL_FORMAT) -> bytes:
    """CONFIGURE's payload for a model of this format: a layered CwC model (format 2) uses lr_shift, rounding and
    seed, and the fields of the FF rule it has none of are 0."""
    if model_format == m.LAYERED_MODEL_FORMAT:
        return m.CONFIGURE.pack(run_id, config.lr_shift, 0, 0, 0, m.ROUNDINGS.index(config.rounding),
                                config.seed & 0xFFFFFFFF, 0, 0, 0)
    c = loss_constants(config, goodness_frac_bits)
    return m.CONFIGURE.pack(run_id, config.lr_shift, config.gamma_shift, m.LOSSES.index(config.loss),
                            m.NEGATIVES.index(config.negatives), m.ROUNDINGS.index(config.rounding),
                            config.seed & 0xFFFFFFFF, c.arg_multiplier, c.arg_shift, c.theta_q)


def run_id_of(image: bytes, config: IntTrainingConfig, goodness_frac_bits: int, stream: SampleStream) -> int:
    """What identifies a run: the model it starts from, its settings (as CONFIGURE carries them for the image's
    format) and its samples."""
    return crc32(image + configure_payload(config, goodness_frac_bits, model_format=image[4]) + stream.identity())


def load_board_trainer(model_path, config: IntTrainingConfig, last_k: int | None = None):
    """(the runtime trainer of an int8 model file as a board trains it, the file's header): IntLayeredTrainer of
    the last_k trainable blocks (None: all) for a layered CwC model, IntTrainer for an FF MLP (no last_k)."""
    _, header = load_model(model_path)
    if (header.get("architecture") or {}).get("kind") != ModelKind.INT8:
        raise EdgeFFError(f"{model_path}: a board trains int8 models; make one with `edgeff quantize`")
    if is_layered(header.get("architecture")):
        return load_layered_trainer(model_path, config, last_k), header
    if last_k is not None:
        raise EdgeFFError(f"{model_path}: --last-k takes a layered (conv) int8 model; an FF MLP trains every layer")
    check_mlp(model_path, header["architecture"])
    return load_trainer(model_path, config), header


def trainer_image(trainer, header: dict) -> bytes:
    """The board image of a runtime trainer's state (its tensors with master weights, its step)."""
    tensors = trainer.tensors() if isinstance(trainer, IntLayeredTrainer) else trainer_tensors(trainer)
    return pack_image(tensors, {**header, "int_training": {"step": trainer.step_count}})


def start_image(model_path, config: IntTrainingConfig, last_k: int | None = None) -> bytes:
    """The board image a run of the model file starts from: an FF MLP's tensors as its file holds them (the board
    adds master weights where there are none), a layered CwC model's trainer state on its last_k blocks."""
    return start_image_of(model_path, *load_board_trainer(model_path, config, last_k))


def start_image_of(model_path, trainer, header: dict) -> bytes:
    """start_image given the file's board trainer and header (load_board_trainer's), for a caller that needs both."""
    if is_layered(header.get("architecture")):
        return trainer_image(trainer, header)
    return pack_image(*load_model(model_path))


def _check_negatives(layered: bool, stream: SampleStream):
    if layered and stream.host_negatives:
        raise EdgeFFError("a layered CwC (conv) model trains without negative labels: host negatives "
                          "(--host-negatives) are for FF MLPs")


def train_on_board(link: BoardLink, model_path, stream: SampleStream, config: IntTrainingConfig,
                   checkpoint_every=1000, quiet=False, checkpoints_outlive=True, window=True,
                   last_k: int | None = None) -> dict:
    """Train the board on the whole stream (resuming a run it already holds); returns the run's figures
    and the board's final image. Progress (load, samples, pull) and notices go to stderr.
    checkpoints_outlive: whether the board's checkpoints outlast this call (not an emulated board's).
    window: several requests in flight (BoardLink.train_window); False: one at a time, stop-and-wait.
    last_k: a layered model's trained blocks, the last K trainable ones (None: all)."""
    config.check()
    image = start_image(model_path, config, last_k)
    _check_negatives(image[4] == m.LAYERED_MODEL_FORMAT, stream)
    frac_bits = load_model(model_path)[1]["quantization"]["goodness_frac_bits"]
    run_id = run_id_of(image, config, frac_bits, stream)
    recent = deque(maxlen=RECENT)
    resets, first, sent = 0, None, set()        # sent: the samples whose record went to the board
    checkpointed = True                         # whether the board has kept every checkpoint asked for
    clock = {"load": 0.0, "train": 0.0, "pull": 0.0}
    start = time.monotonic()
    bar = tqdm(total=len(stream), unit="sample", desc=f"training on {link.info.name}", disable=quiet,
               file=sys.stderr)
    try:
        while True:
            try:
                info = link.info
                if info.configured and info.run_id == run_id:
                    position = info.applied                       # resume the run the board holds
                    bar.write(f"{info.name} holds this run at sample {position}: going on from there", sys.stderr)
                else:
                    bar.write(f"{info.name} holds no part of this run: loading the model and starting at sample 0",
                              sys.stderr)
                    t = time.monotonic()
                    with _bytes_bar("loading the model", len(image), quiet) as progress:
                        link.load_image(image, progress)
                    link.value(m.Request.CONFIGURE, configure_payload(config, frac_bits, run_id, image[4]))
                    clock["load"] += time.monotonic() - t
                    position = 0
                # the board's compute counter runs since its boot: only this stretch of the run is this run's
                segment = (position, link.metrics()["compute_us"])
                first = position if first is None else first
                bar.n = position
                bar.refresh()
                while position < len(stream):
                    stop = min(len(stream), (position // checkpoint_every + 1) * checkpoint_every)
                    for applied, correct in _train_stretch(link, stream, position, stop, window, sent):
                        if applied > len(stream):
                            raise EdgeFFError(f"the board reports {applied} samples applied, more than the "
                                              f"run's {len(stream)}")
                        position = applied
                        if correct is not None:
                            recent.append(correct)
                        bar.n = position
                        bar.set_postfix(goodness_acc=f"{np.mean(recent):.3f}" if recent else "-", refresh=False)
                        bar.update(0)
                    if position % checkpoint_every == 0:
                        checkpointed &= _checkpoint(link, bar, checkpointed)
                checkpointed &= _checkpoint(link, bar, checkpointed)
                metrics = link.metrics()
                t = time.monotonic()
                with _bytes_bar("pulling the model", info.image_bytes, quiet) as progress:
                    final = link.read_image(progress)
                clock["pull"] += time.monotonic() - t
                break
            except LinkReset:
                resets += 1
                bar.write(f"link lost; reconnected to {link.info.name}", sys.stderr)
    except LinkDead as exc:
        info = link.info
        if not (info.run_id == run_id and info.configured):
            kept = "it held no checkpoint of this run: running the same command again starts from sample 0"
        elif not checkpoints_outlive:
            kept = (f"it held this run at sample {info.checkpoint_applied}, but its checkpoints end with this "
                    "command: running it again starts from sample 0")
        else:
            kept = (f"it held this run checkpointed at sample {info.checkpoint_applied}: running the same command "
                    "again goes on from there")
        raise EdgeFFError(f"{exc}. When the board last answered, {kept}") from None
    finally:
        bar.close()
    seconds = time.monotonic() - start
    clock["train"] = seconds - clock["load"] - clock["pull"]     # all the rest, resumes included
    computed = metrics["applied"] - segment[0]
    return {"samples": len(stream), "samples_sent": len(sent),
            "seconds": seconds, "seconds_by_phase": clock,
            # samples trained by this call per second of its training phase (resumes included)
            "samples_per_s": (len(stream) - first) / max(clock["train"], 1e-9), "resumes": resets,
            "board_compute_us_per_sample": (metrics["compute_us"] - segment[1]) / computed if computed else None,
            "recent_goodness_accuracy": float(np.mean(recent)) if recent else None,
            "board_metrics": metrics, "link": dict(link.stats), "run_id": run_id, "image": final,
            "checkpoints_kept": checkpointed}


def _checkpoint(link: BoardLink, bar, say_it: bool) -> bool:
    """Ask the board to checkpoint; False when it could not (a board without storage, such as the Arduino
    library without setStorage), which is said once: training goes on, but a break restarts the run."""
    try:
        link.value(m.Request.CHECKPOINT)
        return True
    except BoardError as exc:
        if exc.code != m.ErrorCode.STORAGE:
            raise
        if say_it:                        # the first time only
            bar.write(f"{link.info.name} keeps no checkpoint ({exc.reason}): training goes on, but a break in "
                      "the link or a power cycle restarts the run from sample 0", sys.stderr)
        return False


@contextmanager
def _bytes_bar(what: str, total: int, quiet: bool):
    """A progress bar of bytes on stderr, and the callback that moves it."""
    with tqdm(total=total, unit="B", unit_scale=True, desc=what, disable=quiet, file=sys.stderr,
              leave=False) as bar:
        def progress(done, size):
            bar.total = size
            bar.update(done - bar.n)      # redrawn at tqdm's own pace, not once per chunk
        yield progress


def _train_stretch(link: BoardLink, stream: SampleStream, start: int, stop: int, window: bool, sent: set):
    """Samples start..stop-1 onto the board, windowed or one at a time; yields (the board's applied count,
    goodness correct or None) as samples are confirmed, and names the sample when the board refuses one.
    Adds each sample whose record it sends to `sent`."""
    def record(p):
        sent.add(p)
        return stream.record(p)

    try:
        if window:
            yield from link.train_window(start, stop, record)
            return
        position = start
        while position < stop:
            position, correct, duplicate = link.train(position, record(position))
            yield position, None if duplicate else correct
    except BoardError as exc:
        if exc.code == m.ErrorCode.SEQUENCE and exc.detail <= len(stream):
            yield exc.detail, None                              # the board is elsewhere: follow it
            return
        index, negative = stream.sample(exc.sample)
        negative = "drawn by the board" if negative == m.NO_NEGATIVE else negative
        raise EdgeFFError(f"the board refused sample {exc.sample} of the run (training image {index}, label "
                          f"{stream.labels[index]}, negative {negative}): {exc.reason}") from None


def runtime_image(model_path, stream: SampleStream, config: IntTrainingConfig, after_step=None,
                  last_k: int | None = None) -> bytes:
    """What a board should read back after the stream: the NumPy runtime's training state after the same
    samples, as a board image (every board's result is compared with this, byte for byte).
    after_step(samples applied, trainer), if given, sees the runtime's state after each sample: the board's own.
    last_k: a layered model's trained blocks, as train_on_board's."""
    trainer, header = load_board_trainer(model_path, config, last_k)
    layered = isinstance(trainer, IntLayeredTrainer)
    _check_negatives(layered, stream)
    for p in range(len(stream)):
        index, negative = stream.sample(p)
        images, labels = stream.images[[index]], stream.labels[[index]]
        if layered:
            trainer.step(images, labels)
        else:
            trainer.step(images, labels, None if negative == m.NO_NEGATIVE else np.array([negative]))
        if after_step:
            after_step(p + 1, trainer)
    return trainer_image(trainer, header)


def save_pulled_model(image: bytes, out_path, base_model=None, training: dict | None = None):
    """Write a board image as an int8 model file (with master weights), keeping the base model file's
    header and float metadata when one is given. A format-2 image (a layered CwC model) holds no float scales,
    so it needs the base model, the file the board was loaded from."""
    image_tensors, image_header = unpack_image(image)
    base_tensors, base_header = load_model(base_model) if base_model else ({}, {})
    header = merge_header(base_header, image_header)
    if training:
        header["int_training"] = {**header["int_training"], **training}
    if image[4] == m.LAYERED_MODEL_FORMAT:
        if base_model is None:
            raise EdgeFFError("the board holds a layered CwC (conv) model, whose image has no float scales: give the "
                              "model file it was loaded from (--model)")
        tensors = {**base_tensors, **image_tensors}
        # the base file's scales with the image's integers: refused here, not when the file is next read, when
        # the base is another model
        IntLayeredModel.from_tensors(tensors, header, where=f"the board's model with {base_model}'s header")
        return save_model(out_path, tensors, header)
    trainer = trainer_from_tensors(image_tensors, image_header, IntTrainingConfig(), "board image")
    return save_model(out_path, {**base_tensors, **trainer_tensors(trainer)}, header)
