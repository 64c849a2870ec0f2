"""One trial of a sweep, run inside a Ray worker: train, score on the test split, optionally quantize and
finetune the int8 model; returns the trial's row of the results table.

A trial that raises is returned as a row with status "failed" and the error, so one bad variant does not
stop the sweep; the driver writes the row like any other.
"""
import socket
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.quant.ptq import quantize
from edgeff.runtime.finetune import finetune
from edgeff.runtime.int_model import IntFFModel, evaluate_int
from edgeff.runtime.int_training import IntTrainingConfig, load_trainer
from edgeff.sweep.spec import Trial
from edgeff.train.config import config_from_dict
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network
from edgeff.train.trainer import train

CALIBRATION_SAMPLES = 2000   # as `edgeff quantize` by default


def curves(history: list) -> dict:
    """Per-layer and model validation accuracy at every evaluated epoch (the trainer's seed-001 record)."""
    evaluated = [h for h in history if "val_model" in h]
    return {"epoch": [h["epoch"] for h in evaluated], "model": [h["val_model"] for h in evaluated],
            "layers": [list(acc) for acc in zip(*[h["val_per_layer"] for h in evaluated], strict=True)]}


def _int8_rows(trial: Trial, model_file: Path, out: Path, data, eval_layers) -> dict:
    int_path = out / "model-int8.safetensors"
    quantize(model_file, int_path, data.train.images[:CALIBRATION_SAMPLES],
             data.train.labels[:CALIBRATION_SAMPLES], data.fingerprint)
    scores = evaluate_int(IntFFModel.from_file(int_path), data.test.images, data.test.labels, eval_layers)
    row = {"int8_multi_pass": scores["multi_pass"], "int8_one_pass": scores["one_pass"]}
    if trial.finetune_epochs:
        trainer = load_trainer(int_path, IntTrainingConfig(seed=trial.seed))
        samples = min(trial.finetune_samples or len(data.train), len(data.train))
        finetune(trainer, data.train, data.val, trial.finetune_epochs, samples, 1, trial.seed, eval_layers)
        row["finetune_multi_pass"] = evaluate_int(trainer.model, data.test.images, data.test.labels,
                                                  eval_layers, "multi")["multi_pass"]
    return row


def _train_and_score(trial: Trial, out: Path) -> dict:
    torch.set_num_threads(trial.cpus)   # the CPUs Ray reserved for this trial, not every core of the node
    cfg = config_from_dict(trial.config, source=f"variant {trial.variant!r}")
    data = load_dataset(trial.data_dir, val_size=cfg.train.val_size, val_fraction=cfg.train.val_fraction)
    metrics = train(cfg, data, out, fresh=True, quiet=True)
    model_file = Path(metrics["model_file"])
    net, header = load_network(model_file)
    eval_layers = header["architecture"]["eval_layers"]
    test = evaluate(net, data.test.images, data.test.labels, eval_layers)
    row = {"test_multi_pass": test["multi_pass"], "test_one_pass": test["one_pass"],
           "val_multi_pass": metrics["val"]["multi_pass"], "val_one_pass": metrics["val"]["one_pass"],
           "epochs_run": metrics["epochs_run"], "train_s": metrics["train_seconds"],
           "test_per_layer": test["per_layer"], "correlation": metrics["layer_model_correlation"],
           "gamma_final": metrics["gamma_final"], "curves": curves(metrics["history"]),
           "data_sha256": data.fingerprint["train_sha256"]}
    if trial.quantize:
        row |= _int8_rows(trial, model_file, out, data, eval_layers)
    return row


def failure_text(exc: BaseException) -> str:
    """The error as one line: an EdgeFFError's message; otherwise the exception and where it was raised."""
    if isinstance(exc, EdgeFFError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def run_trial(trial: Trial) -> dict:
    """The trial's row: identity, settings, metrics (or the error), wall time and host."""
    t0 = time.perf_counter()
    row = {"variant": trial.variant, "config_hash": trial.config_hash, "seed": trial.seed,
           "params": trial.params, "sizes": trial.config["model"]["sizes"],
           "collab": trial.config.get("collab", {}).get("mode", "none"), "host": socket.gethostname()}
    try:
        if trial.keep_dir:
            row |= _train_and_score(trial, Path(trial.keep_dir))
        else:
            with tempfile.TemporaryDirectory(prefix="edgeff-trial-") as tmp:
                row |= _train_and_score(trial, Path(tmp))
        row["status"] = "ok"
    except Exception as exc:   # any failure of this trial is its result; the sweep goes on with the others
        row |= {"status": "failed", "error": failure_text(exc)}
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return row
