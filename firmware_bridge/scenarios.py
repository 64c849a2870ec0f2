"""On-device learning a user can see: a deployed model meets data its host never saw, and the board learns it
from a stream over the serial link.

    new-classes  the host trains on 8 of the 10 classes (all but `new`, default 8 and 9); the board learns the
                 other two from a stream of their images, mixed with images from a replay buffer of the
                 earlier classes (`replay` images, 0 for none; `replay_ratio` replayed per new one)
    drift        the host trains on clean images; the deployed sensor shifts (edgeff.data.sensor_shifts:
                 exposure or mount) and the board adapts on a stream of shifted training images

A run (run_scenario) starts from an int8 model the host trained on its share of the data (the host's
training is edgeff.app.report.on_device's: this package needs no torch), streams the samples to the board
with train_on_board, and checks that the image pulled back is bit-identical to the
NumPy runtime's after the same stream. Accuracy against samples seen is the runtime's along that stream:
it is the board's, since the final images are equal bit for bit and every step is deterministic.

The replay buffer is sent by the host within the stream; a board that replays on its own would keep it in
flash, written once at deployment as the model is: replay_flash_bytes says how much that is.
"""
from dataclasses import dataclass, replace

import numpy as np

from edgeff.data.datasets import Dataset, Split
from edgeff.data.sensor_shifts import SHIFTS, shifted
from edgeff.errors import EdgeFFError
from edgeff.plots import line_plot
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge.board_training import SampleStream, runtime_image, train_on_board
from firmware_bridge.driver import BoardLink

SCENARIOS = ("new-classes", "drift")
# Settings measured on Fashion-MNIST with the runtime (docs/on_device_learning.md): for new classes, hard
# negatives learn them in about half the samples random ones need, and at 2^-18 with three replayed images per
# new one the old classes lost the least for the new classes learnt; for drift 2^-18 with random negatives
# gained the most on the shifted images in 4,000 samples for a point or less on the original ones.
REPLAY, REPLAY_RATIO = 600, 3          # the replay buffer's images, replayed images per new one
LEARNING = {"new-classes": IntTrainingConfig(lr_shift=18, negatives="hard"),
            "drift": IntTrainingConfig(lr_shift=18, negatives="random")}


@dataclass
class Scenario:
    name: str
    what: str                  # one line for reports
    host: Dataset              # what the host trains on
    stream: Split              # the pool the board's samples are drawn from (SampleStream shuffles it)
    evaluations: dict          # name -> Split, accuracy before, along and after
    config: IntTrainingConfig
    replay_flash_bytes: int = 0
    new: tuple = ()            # the classes the host never saw (new-classes)


def _where(split: Split, keep: np.ndarray) -> Split:
    return Split(split.images[keep], split.labels[keep])


def new_classes(data: Dataset, new=(8, 9), replay=REPLAY, replay_ratio=REPLAY_RATIO, seed=0) -> Scenario:
    """The host never sees the classes in `new`; the board meets them, with `replay` images of the others
    coming `replay_ratio` times as often as the new ones."""
    new = sorted(set(new))
    if not new or not all(0 <= c < data.n_classes for c in new) or len(new) >= data.n_classes:
        raise EdgeFFError(f"new classes {new}: give one or more of 0..{data.n_classes - 1}, not all of them")
    old = lambda split: ~np.isin(split.labels, new)   # noqa: E731
    host = replace(data, train=_where(data.train, old(data.train)), val=_where(data.val, old(data.val)))
    fresh = _where(data.train, ~old(data.train))
    if not 0 <= replay <= len(host.train):
        raise EdgeFFError(f"replay {replay}: the buffer takes 0..{len(host.train)} images of the old classes")
    if replay and not 1 <= replay_ratio <= 10:
        raise EdgeFFError(f"replay ratio {replay_ratio}: give 1..10 replayed images per new one")
    pool = fresh
    if replay:
        chosen = np.random.default_rng(seed).choice(len(host.train), replay, replace=False)
        repeats = np.resize(chosen, replay_ratio * len(fresh))
        pool = Split(np.concatenate([fresh.images, host.train.images[repeats]]),
                     np.concatenate([fresh.labels, host.train.labels[repeats]]))
    record = 2 + data.train.images.shape[1]
    buffer = f"a replay buffer of {replay} earlier images, {replay_ratio}:1" if replay else "no replay"
    return Scenario("new-classes", f"the host trains on classes other than {new}; the board learns {new} ({buffer})",
                    host, pool, {"old classes": _where(data.test, old(data.test)),
                                 "new classes": _where(data.test, ~old(data.test))},
                    LEARNING["new-classes"], replay * record, tuple(new))


def drift(data: Dataset, shift="exposure", seed=0) -> Scenario:
    """The host trains on clean images; the board's sensor delivers `shift`ed ones."""
    if shift not in SHIFTS:
        raise EdgeFFError(f"unknown sensor shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    moved = Split(shifted(data.train.images, shift, seed), data.train.labels)
    return Scenario("drift", f"the host trains on clean images; the board's sensor shifts ({shift})", data, moved,
                    {"shifted": Split(shifted(data.test.images, shift, seed + 1), data.test.labels),
                     "original": data.test}, LEARNING["drift"])


def _accuracy(model: IntFFModel, split: Split) -> float:
    return float((model.multi_pass_scores(split.images).argmax(axis=1) == split.labels).mean())


def taken_for_new(model: IntFFModel, split: Split, new) -> float:
    """Share of the split's images the model assigns to one of the `new` classes: where old-class accuracy goes
    when a board learns new classes (the new labels' goodness rising on old images, not old features lost)."""
    return float(np.isin(model.multi_pass_scores(split.images).argmax(axis=1), new).mean())


def run_scenario(scenario: Scenario, int_path, link: BoardLink, samples: int, points=8, quiet=False) -> dict:
    """Stream `samples` of the scenario to the board behind `link` from the int8 model at int_path; returns the
    accuracies before and after (multi-pass, the model's eval layers), the curve against samples seen
    (`points` points), whether the board's image equals the runtime's, and the link's figures."""
    n = min(samples, len(scenario.stream))
    stream = SampleStream(scenario.stream.images, scenario.stream.labels, n, seed=1)
    host = IntFFModel.from_file(int_path)
    before = {name: _accuracy(host, split) for name, split in scenario.evaluations.items()}
    result = train_on_board(link, int_path, stream, scenario.config, checkpoint_every=max(n // 2, 1), quiet=quiet)
    marks = set(np.linspace(0, n, points + 1).astype(int)[1:])
    curve = [{"samples": 0, **before}]

    diagnosis = {}

    def measure(applied, trainer):
        if applied in marks:
            curve.append({"samples": applied, **{name: _accuracy(trainer.model, split)
                                                 for name, split in scenario.evaluations.items()}})
        if applied == n and scenario.new:
            diagnosis["after"] = taken_for_new(trainer.model, scenario.evaluations["old classes"], scenario.new)

    expected = runtime_image(int_path, stream, scenario.config, after_step=measure)
    if scenario.new:
        diagnosis["before"] = taken_for_new(host, scenario.evaluations["old classes"], scenario.new)
    return {"scenario": scenario.name, "what": scenario.what, "samples": n, "lr_shift": scenario.config.lr_shift,
            "negatives": scenario.config.negatives, "before": before, "after": {k: curve[-1][k] for k in before},
            "curve": curve, "runtime_identical": result["image"] == expected,
            "replay_flash_bytes": scenario.replay_flash_bytes, "board": link.info.name, "image": result["image"],
            "old_taken_for_new": diagnosis or None,
            **{k: result[k] for k in ("samples_per_s", "board_compute_us_per_sample", "resumes")}}


def plot_curve(result: dict, path):
    """Accuracy on each evaluation set against samples seen on the board (PNG)."""
    names = list(result["before"])
    line_plot({name: ([c["samples"] for c in result["curve"]], [c[name] for c in result["curve"]]) for name in names},
              path, f"{result['scenario']} on {result['board']}", "samples seen on the board",
              "test accuracy (int8, multi-pass)")
