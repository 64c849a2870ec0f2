"""The FF / CFF training loop: fast (mini-batch, all layers every step) and paper (layer after layer).

One epoch visits the training set once in an order drawn from (seed, epoch). Each step embeds the true
label (positive) and a wrong one (negative: uniformly random, or the one the current model scores
highest), computes every layer's goodness in one pass, couples them (CFF) and updates each layer from its
own loss only. After every epoch the per-layer validation accuracy is recorded (Adamson 2025) and a
checkpoint is written; at the end the layers summed for multi-pass inference are chosen on validation,
the one-pass softmax head is fitted, and the model file, metrics and plots are written.
"""
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeff.atomic_write import atomic_write_text
from edgeff.data.datasets import Dataset
from edgeff.data.labels import hardest_wrong_labels, overlay_labels, random_wrong_labels
from edgeff.errors import EdgeFFError
from edgeff.plots import plot_gamma, plot_layer_accuracy
from edgeff.scoring import best_layer_subset, multi_pass_accuracy, per_layer_accuracy
from edgeff.train.checkpoint import resume, save_checkpoint
from edgeff.train.config import Config
from edgeff.train.evaluate import evaluate, images_to_input, label_scores
from edgeff.train.losses import ff_loss
from edgeff.train.model_io import save_network
from edgeff.train.network import FFNetwork

SCORE_CHUNK = 4096  # samples scored at once when picking hard negatives (bounds memory in full batch)


def build_network(cfg: Config, n_classes: int) -> FFNetwork:
    return FFNetwork(cfg.model.sizes, n_classes, cfg.model.label_value, cfg.model.goodness,
                     cfg.collab.mode, cfg.collab.gamma_init, cfg.eval.head_layers, cfg.model.normalization,
                     cfg.model.qat)


def build_optimizer(net: FFNetwork, cfg: Config) -> torch.optim.Adam:
    groups = [{"params": list(net.layers.parameters()), "lr": cfg.train.lr}]
    if cfg.collab.mode == "adaptive":
        groups.append({"params": [net.gamma], "lr": cfg.collab.gamma_lr})
    return torch.optim.Adam(groups)


def epoch_plan(cfg: Config) -> list:
    """Per epoch: (0-based layers trained, epoch index within its phase, epochs in the phase)."""
    e, n = cfg.train.epochs, cfg.n_layers
    if cfg.train.protocol == "fast":
        return [(list(range(n)), i, e) for i in range(e)]
    return [([layer], i, e) for layer in range(n) for i in range(e)]


def multistep_multiplier(cfg: Config, epoch: int) -> float:
    """torch's MultiStepLR: lr_factor once for every milestone reached after `epoch` epochs (0-based)."""
    return cfg.train.lr_factor ** sum(epoch >= m for m in cfg.train.milestones)


def lr_multiplier(cfg: Config, step: int, total: int, warmup: int, steps_per_epoch: int = 1) -> float:
    if cfg.train.lr_schedule == "constant":
        return 1.0
    if cfg.train.lr_schedule == "multistep":
        return multistep_multiplier(cfg, step // steps_per_epoch)
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * 0.5 * (1.0 + math.cos(math.pi * step / total))


def negative_labels(net, x0, y, cfg, rng, scored_layers) -> torch.Tensor:
    if cfg.train.negatives == "random":
        return torch.from_numpy(random_wrong_labels(y.numpy(), net.n_classes, rng))
    scores = torch.cat([net.label_scores(x0[i:i + SCORE_CHUNK])[scored_layers].sum(dim=0)
                        for i in range(0, len(x0), SCORE_CHUNK)])
    return torch.from_numpy(hardest_wrong_labels(scores.numpy(), y.numpy()))


def train_step(net, optimizer, x0, y, y_neg, trained, cfg) -> torch.Tensor:
    """One FF update on a batch; returns the (n_layers,) losses. Only `trained` layers' losses count."""
    b = len(y)
    x = overlay_labels(torch.cat([x0, x0]), torch.cat([y, y_neg]), net.n_classes, net.label_value)
    g = net.collaborative(net.layer_goodness(x))
    losses = ff_loss(cfg.train.loss, g[:, :b], g[:, b:], cfg.train.theta, cfg.train.symba_alpha)
    optimizer.zero_grad(set_to_none=True)
    losses[trained].sum().backward()
    for k, layer in enumerate(net.layers):
        if k not in trained:  # their grads are zeros, not None: Adam's momentum would still move them
            for p in layer.parameters():
                p.grad = None
    optimizer.step()
    return losses.detach()


def notice(text: str, quiet: bool):
    """A progress line on stderr (stdout is for results: one JSON document under --json)."""
    if not quiet:
        tqdm.write(text, file=sys.stderr)


def fit_head(net: FFNetwork, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int, quiet=True):
    """Fit the one-pass softmax head on frozen FF features (cross-entropy, Adam)."""
    if epochs == 0:
        return
    notice(f"one-pass head: features of {len(labels)} training images", quiet)
    with torch.no_grad():
        feats = torch.cat([net.head_features(net.inputs(images[i:i + SCORE_CHUNK]))
                           for i in range(0, len(images), SCORE_CHUNK)])
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(net.head.parameters(), lr=3e-3)
    rng = np.random.default_rng([seed, 1 << 20])
    for _ in tqdm(range(epochs), desc="fit one-pass head", unit="epoch", disable=quiet, file=sys.stderr):
        for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // 256)):
            idx = torch.from_numpy(idx)
            loss = torch.nn.functional.cross_entropy(net.head(feats[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def layer_model_correlation(history: list) -> list:
    """Pearson correlation of each layer's validation accuracy with the model's over training (Adamson 2025); None
    where either curve is flat, which has no correlation (tested on max - min: the std of equal floats can come
    out a rounding error above 0, and corrcoef then correlates that noise)."""
    if len(history) < 3:
        return []
    model = np.array([h["val_model"] for h in history])
    layers = np.array([h["val_per_layer"] for h in history]).T
    out = []
    for acc in layers:
        ok = np.ptp(acc) > 0 and np.ptp(model) > 0
        out.append(float(np.corrcoef(acc, model)[0, 1]) if ok else None)
    return out


def train(cfg: Config, data: Dataset, out_dir, fresh=False, quiet=False) -> dict:
    """Train per `cfg`, resuming from out_dir/checkpoint.safetensors unless `fresh`; return the metrics."""
    if cfg.layered:
        raise EdgeFFError(f"{cfg.name}: a layered network ([model] layers) trains with `edgeff train` "
                          "(edgeff.train.conv_trainer); this command takes an MLP config ([model] sizes)")
    width = data.train.images.shape[1]
    if cfg.model.sizes[0] != width:   # checked before out_dir exists: a refused run leaves nothing behind
        raise EdgeFFError(f"{cfg.name}: [model] sizes starts with an input width of {cfg.model.sizes[0]}, but "
                          f"the images in {data.directory} have {width} pixels; set sizes = [{width}, ...]")
    if data.n_classes > width:
        raise EdgeFFError(f"{data.directory}: {data.n_classes} classes need as many label pixels, but the "
                          f"images have only {width} pixels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.safetensors"
    torch.manual_seed(cfg.train.seed)
    net = build_network(cfg, data.n_classes)
    optimizer = build_optimizer(net, cfg)
    plan = epoch_plan(cfg)
    t = cfg.train
    x_train = images_to_input(data.train.images, data.n_classes)
    y_train = torch.from_numpy(data.train.labels)
    n = len(y_train)
    batch = n if t.batch_size == 0 else min(t.batch_size, n)
    steps_per_epoch = n // batch
    history, start_epoch, elapsed_before = resume(ckpt_path, fresh, net, optimizer, cfg.to_dict(),
                                                  data.fingerprint["train_sha256"])
    if start_epoch:
        notice(f"resuming {cfg.name} from {ckpt_path} after epoch {start_epoch}/{len(plan)}", quiet)
    t0 = time.perf_counter() - elapsed_before
    eval_n = min(t.eval_samples, len(data.val))
    val_eval_images, val_eval_labels = data.val.images[:eval_n], data.val.labels[:eval_n]
    bar = tqdm(total=len(plan) * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               desc=f"train {cfg.name}", disable=quiet, dynamic_ncols=True, file=sys.stderr)
    for epoch in range(start_epoch, len(plan)):
        trained, phase_epoch, phase_epochs = plan[epoch]
        rng = np.random.default_rng([t.seed, epoch])
        order = rng.permutation(n)
        scored = list(range(max(trained) + 1))
        loss_sum = torch.zeros(net.n_layers)
        phase_steps = phase_epochs * steps_per_epoch
        warmup = int(t.warmup_epochs * steps_per_epoch)
        for s in range(steps_per_epoch):
            step = phase_epoch * steps_per_epoch + s
            mult = lr_multiplier(cfg, step, phase_steps, warmup, steps_per_epoch)
            optimizer.param_groups[0]["lr"] = t.lr * mult
            idx = torch.from_numpy(order[s * batch:(s + 1) * batch])
            x0, y = x_train[idx], y_train[idx]
            y_neg = negative_labels(net, x0, y, cfg, rng, scored)
            loss_sum += train_step(net, optimizer, x0, y, y_neg, trained, cfg)
            bar.update(1)
        record = {"epoch": epoch + 1, "elapsed_s": round(time.perf_counter() - t0, 3),
                  "trained_layers": [l + 1 for l in trained], "lr": t.lr * mult,
                  "loss": (loss_sum / steps_per_epoch).tolist(), "gamma": net.gamma.detach().tolist()}
        if (epoch + 1) % t.eval_every == 0 or epoch + 1 == len(plan):
            scores = label_scores(net, val_eval_images)
            record["val_per_layer"] = per_layer_accuracy(scores, val_eval_labels)
            record["val_model"] = multi_pass_accuracy(scores, val_eval_labels, range(1, net.n_layers + 1))
            bar.set_postfix(epoch=epoch + 1, val=f"{record['val_model']:.4f}")
        history.append(record)
        save_checkpoint(ckpt_path, net, optimizer,
                        {"config": cfg.to_dict(), "epoch": epoch + 1, "history": history,
                         "elapsed_s": time.perf_counter() - t0,
                         "data_sha256": data.fingerprint["train_sha256"]})
    bar.close()
    return _finish(cfg, data, net, history, out_dir, t0, quiet)


def _finish(cfg, data, net, history, out_dir, t0, quiet) -> dict:
    """Choose the multi-pass layers on validation, fit the head, write model, metrics and plots."""
    net.eval()
    notice(f"choosing the multi-pass layers on {len(data.val)} validation images", quiet)
    scores = label_scores(net, data.val.images)
    if cfg.eval.layers == "auto":
        eval_layers = best_layer_subset(scores, data.val.labels)
    else:
        eval_layers = cfg.eval.layers
    fit_head(net, data.train.images, data.train.labels, cfg.eval.head_epochs, cfg.train.seed, quiet)
    val = evaluate(net, data.val.images, data.val.labels, eval_layers)
    evaluated = [h for h in history if "val_model" in h]
    metrics = {
        "name": cfg.name,
        "val": val,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "epochs_run": len(history),
        "layer_model_correlation": layer_model_correlation(evaluated),
        "gamma_final": net.gamma.detach().tolist(),
        "history": history,
    }
    model_path = save_network(
        out_dir / "model.safetensors", net, eval_layers,
        training={"config": cfg.to_dict(), "torch": torch.__version__, "python": platform.python_version()},
        metrics={k: v for k, v in metrics.items() if k != "history"} | {"history": history},
        data=data.fingerprint)
    metrics["model_file"] = str(model_path)
    metrics["plots"] = [str(plot_layer_accuracy(evaluated, out_dir / "layer_accuracy.png", cfg.name))]
    if cfg.collab.mode != "none":
        metrics["plots"].append(str(plot_gamma(history, out_dir / "gamma.png", cfg.name)))
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    notice(f"{cfg.name}: val multi-pass {val['multi_pass']:.4f} (layers {eval_layers}), "
           f"one-pass {val['one_pass']:.4f}; wrote {model_path}", quiet)
    return metrics
