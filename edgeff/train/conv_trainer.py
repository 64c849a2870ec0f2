"""The training loop of a layered network (edgeff.train.conv_network): conv blocks, flatten, dense.

One epoch visits the training set once in an order drawn from (seed, epoch). Each step runs the groups of
the local update schedule (edgeff.train.schedules) for that step: every group starts from its input
detached, counts the FF losses of the layers it owns and backpropagates them within itself only; the
backprop objective is one group whose loss is the softmax head's. The learning rate follows the config's
schedule (cosine with warm-up, constant, or multistep) per epoch. After every epoch the per-layer
validation accuracy is recorded (Adamson 2025) and a checkpoint is written, so a run resumes where it stopped.
At the end the layers whose goodness predicts are chosen (or taken from [eval] layers), the one-pass
softmax head of an FF network is fitted on its frozen layers, and the model file, metrics and plot are
written.
"""
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgeff.atomic_write import atomic_write_text
from edgeff.data.datasets import Dataset
from edgeff.data.labels import random_wrong_labels
from edgeff.errors import EdgeFFError
from edgeff.plots import plot_layer_accuracy
from edgeff.scoring import best_layer_subset, multi_pass_accuracy, per_layer_accuracy
from edgeff.train.augment import random_shifts
from edgeff.train.checkpoint import resume, save_checkpoint
from edgeff.train.config import Config, description_of
from edgeff.train.conv_network import ConvFFNetwork
from edgeff.train.evaluate import evaluate, label_scores
from edgeff.train.model_io import save_network
from edgeff.train.schedules import groups
from edgeff.train.trainer import fit_head, layer_model_correlation, lr_multiplier, notice


def build_network(cfg: Config, n_classes: int) -> ConvFFNetwork:
    return ConvFFNetwork(description_of(cfg), n_classes, cfg.model.objective, cfg.eval.head_layers,
                         cfg.model.label_value)


def build_optimizer(net: ConvFFNetwork, cfg: Config) -> torch.optim.Adam:
    params = list(net.layers.parameters())
    if net.objective == "backprop":   # the head is the backprop network's classifier, trained with it
        params += list(net.head.parameters())
    return torch.optim.Adam(params, lr=cfg.train.lr)


def schedule_of(cfg: Config) -> str:
    return "backprop" if cfg.model.objective == "backprop" else cfg.train.schedule


def train_step(net: ConvFFNetwork, optimizer, x, y, cfg: Config, step: int, rng) -> torch.Tensor:
    """One update on a batch; returns the (n_layers,) FF losses (backprop: the head's loss in every entry)."""
    t = cfg.train
    losses = torch.zeros(net.n_layers)
    if net.objective == "backprop":
        total = F.cross_entropy(net.head_logits(x), y)
        losses += total.detach()
    else:
        n_pos = len(y)
        if net.objective == "overlay":
            y_neg = torch.from_numpy(random_wrong_labels(y.numpy(), net.n_classes, rng))
            x = torch.cat([net.with_labels(x, y), net.with_labels(x, y_neg)])
        inputs, total = {0: x}, 0
        for start, stop, owned in groups(schedule_of(cfg), net.n_layers, t.chunk, step, t.alternate):
            for k, h in enumerate(net.run(inputs[start], start, stop), start):
                inputs.setdefault(k + 1, h)
                if k in owned and k in net.trained:
                    loss = net.layer_loss(h, y, n_pos, t.theta)
                    losses[k] = loss.detach()
                    total = total + loss
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return losses


def _check(cfg: Config, data: Dataset, net: ConvFFNetwork):
    width = data.train.images.shape[1]
    if net.description.layers[0].n_inputs != width:
        raise EdgeFFError(f"{cfg.name}: [model] input_shape {cfg.model.input_shape} holds "
                          f"{net.description.layers[0].n_inputs} pixels, but the images in {data.directory} have "
                          f"{width}; set input_shape to the images' [channels, height, width]")
    if net.objective == "overlay" and cfg.train.negatives != "random":
        raise EdgeFFError(f"{cfg.name}: a layered overlay network draws random negatives; set [train] "
                          "negatives = \"random\" (hard negatives would cost n_classes passes a step)")


def train(cfg: Config, data: Dataset, out_dir, fresh=False, quiet=False) -> dict:
    """Train per `cfg`, resuming from out_dir/checkpoint.safetensors unless `fresh`; return the metrics."""
    torch.manual_seed(cfg.train.seed)
    net = build_network(cfg, data.n_classes)
    _check(cfg, data, net)   # before out_dir exists: a refused run leaves nothing behind
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.safetensors"
    optimizer = build_optimizer(net, cfg)
    t = cfg.train
    x_train = net.inputs(data.train.images)
    y_train = torch.from_numpy(data.train.labels)
    n = len(y_train)
    batch = min(t.batch_size, n)
    steps_per_epoch = n // batch
    history, start_epoch, elapsed_before = resume(ckpt_path, fresh, net, optimizer, cfg.to_dict(),
                                                  data.fingerprint["train_sha256"])
    if start_epoch:
        notice(f"resuming {cfg.name} from {ckpt_path} after epoch {start_epoch}/{t.epochs}", quiet)
    t0 = time.perf_counter() - elapsed_before
    eval_n = min(t.eval_samples, len(data.val))
    val_images, val_labels = data.val.images[:eval_n], data.val.labels[:eval_n]
    bar = tqdm(total=t.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               desc=f"train {cfg.name}", disable=quiet, dynamic_ncols=True, file=sys.stderr)
    warmup = int(t.warmup_epochs * steps_per_epoch)
    for epoch in range(start_epoch, t.epochs):
        net.train()
        rng = np.random.default_rng([t.seed, epoch])
        order = rng.permutation(n)
        loss_sum = torch.zeros(net.n_layers)
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            mult = lr_multiplier(cfg, step, t.epochs * steps_per_epoch, warmup, steps_per_epoch)
            optimizer.param_groups[0]["lr"] = t.lr * mult
            idx = torch.from_numpy(order[s * batch:(s + 1) * batch])
            x = random_shifts(x_train[idx], t.shift, rng) if t.shift else x_train[idx]
            loss_sum += train_step(net, optimizer, x, y_train[idx], cfg, step, rng)
            bar.update(1)
        record = {"epoch": epoch + 1, "elapsed_s": round(time.perf_counter() - t0, 3), "lr": t.lr * mult,
                  "loss": (loss_sum / steps_per_epoch).tolist()}
        if net.objective != "backprop" and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs):
            net.eval()
            scores = label_scores(net, val_images)
            record["val_per_layer"] = per_layer_accuracy(scores, val_labels)
            record["val_model"] = multi_pass_accuracy(scores, val_labels, _eval_layers(cfg, net))
            bar.set_postfix(epoch=epoch + 1, val=f"{record['val_model']:.4f}")
        history.append(record)
        save_checkpoint(ckpt_path, net, optimizer,
                        {"config": cfg.to_dict(), "epoch": epoch + 1, "history": history,
                         "elapsed_s": time.perf_counter() - t0, "data_sha256": data.fingerprint["train_sha256"]})
    bar.close()
    return _finish(cfg, data, net, history, out_dir, t0, quiet)


def _eval_layers(cfg: Config, net: ConvFFNetwork) -> list:
    """The layers whose goodness is summed to predict while training: [eval] layers, else every trained one."""
    return cfg.eval.layers if cfg.eval.layers != "auto" else [k + 1 for k in net.trained]


def _finish(cfg, data, net, history, out_dir, t0, quiet) -> dict:
    net.eval()
    if net.objective == "backprop":
        eval_layers, mode = [net.n_layers], "one"
    else:
        mode = "both" if cfg.eval.head_epochs > 0 else "multi"
        eval_layers = cfg.eval.layers
        if eval_layers == "auto":
            notice(f"choosing the predicting layers on {len(data.val)} validation images", quiet)
            eval_layers = best_layer_subset(label_scores(net, data.val.images), data.val.labels)
        fit_head(net, data.train.images, data.train.labels, cfg.eval.head_epochs, cfg.train.seed, quiet)
    val = evaluate(net, data.val.images, data.val.labels, eval_layers, mode)
    evaluated = [h for h in history if "val_model" in h]
    metrics = {"name": cfg.name, "objective": net.objective, "val": val,
               "train_seconds": round(time.perf_counter() - t0, 2), "epochs_run": len(history),
               "layer_model_correlation": layer_model_correlation(evaluated), "history": history}
    model_path = save_network(
        out_dir / "model.safetensors", net, eval_layers,
        training={"config": cfg.to_dict(), "torch": torch.__version__, "python": platform.python_version()},
        metrics=metrics, data=data.fingerprint)
    metrics["model_file"] = str(model_path)
    metrics["plots"] = ([str(plot_layer_accuracy(evaluated, out_dir / "layer_accuracy.png", cfg.name))]
                        if evaluated else [])
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    summary = ", ".join(f"{k} {val[k]:.4f}" for k in ("multi_pass", "one_pass") if k in val)
    notice(f"{cfg.name}: val {summary} (goodness of layers {eval_layers}); wrote {model_path}", quiet)
    return metrics
