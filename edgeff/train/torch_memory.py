"""Measured memory peaks of torch (float32) host training, next to which the profiler's analytic model is
checked (`edgeff profile --measure`). Lives with the trainer because it runs torch; the profiler itself
imports no torch.

Each measurement runs in a fresh Python process (`python -m edgeff.train.torch_memory ...`). It warms torch
up on a throwaway copy, resets the kernel's peak-RSS counter (/proc/self/clear_refs), and reports VmHWM minus
the RSS before the model was built. glibc is told to serve every allocation above 4 KB with its own mmap and
to return freed memory at once (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_), so RSS follows the live
tensors instead of the allocator's caches. Linux only.

FF is measured layer-local (each layer's forward, backward and Adam step in turn, its gradients
freed before the next layer), which is what FF's locality allows; backprop is an MLP of the same
hidden layers plus a linear classifier, trained with cross-entropy and Adam on the same data. A network
with conv blocks is measured the same way with the conv trainer's modules (channel-wise competitive FF
against the same layers trained end to end through the softmax head).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from edgeff.data.labels import overlay_labels
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise EdgeFFError(f"/proc/self/status has no {key}; memory measurement needs Linux")


def _torch_training(method: str, sizes: list, batch: int, n_classes: int, steps: int, seed: int):
    """A function that builds a model and its optimizer and runs `steps` training steps. FF calls
    probe("start" | "end", layer) around each layer's update in the last step (per-layer peaks)."""
    import torch
    import torch.nn.functional as F

    from edgeff.train.network import normalize

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, sizes[0], generator=gen)
    y = torch.randint(0, n_classes, (batch,), generator=gen)

    def run(probe=lambda phase, layer: None):
        if method == "backprop":
            dims = [*sizes, n_classes]
            mods = []
            for a, b in zip(dims[:-1], dims[1:], strict=True):
                mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            mlp = torch.nn.Sequential(*mods[:-1])
            opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
            for _ in range(steps):
                loss = F.cross_entropy(mlp(x0), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return
        layers = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        opts = [torch.optim.Adam(layer.parameters(), lr=1e-3) for layer in layers]
        for step in range(steps):
            h = overlay_labels(torch.cat([x0, x0]), torch.cat([y, (y + 1) % n_classes]), n_classes, 1.0)
            for i, (layer, opt) in enumerate(zip(layers, opts, strict=True)):
                if step == steps - 1:
                    probe("start", i)
                out = torch.relu(layer(normalize(h)))
                g = (out * out).mean(dim=1)
                loss = F.softplus(2.0 - g[:batch]).mean() + F.softplus(g[batch:] - 2.0).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                h = out.detach()
                if step == steps - 1:
                    probe("end", i)
    return run


def _conv_training(method: str, description: ModelDescription, batch: int, n_classes: int, steps: int,
                   seed: int):
    """As _torch_training, for a network with conv blocks: FF is channel-wise competitive learning (the conv
    trainer's objective), each layer's forward, backward and Adam step in turn on its detached input;
    backprop is the same layers end to end through the softmax head, with cross-entropy and Adam."""
    import torch
    import torch.nn.functional as F

    from edgeff.train.conv_network import ConvFFNetwork

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, *description.input_shape, generator=gen)
    y = torch.randint(0, n_classes, (batch,), generator=gen)

    def run(probe=lambda phase, layer: None):
        torch.manual_seed(seed)
        if method == "backprop":
            net = ConvFFNetwork(description, n_classes, "backprop")
            opt = torch.optim.Adam([*net.layers.parameters(), *net.head.parameters()], lr=1e-3)
            for _ in range(steps):
                loss = F.cross_entropy(net.head_logits(x0), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return
        net = ConvFFNetwork(description, n_classes, "cwc")
        opts = {k: torch.optim.Adam(net.layers[k].parameters(), lr=1e-3) for k in net.trained}
        for step in range(steps):
            h = x0
            for k in range(net.n_layers):
                if step == steps - 1:
                    probe("start", k)
                out = net.run(h, k, k + 1)[0]
                if k in opts:
                    opts[k].zero_grad(set_to_none=True)
                    net.layer_loss(out, y, batch, 0.0).backward()
                    opts[k].step()
                    opts[k].zero_grad(set_to_none=True)
                h = out.detach()
                if step == steps - 1:
                    probe("end", k)
    return run


def _training(method: str, description: ModelDescription, batch: int, n_classes: int, steps: int, seed: int):
    if all(len(spec.in_shape) == 1 for spec in description.layers):    # an MLP
        return _torch_training(method, description.sizes, batch, n_classes, steps, seed)
    return _conv_training(method, description, batch, n_classes, steps, seed)


def _child(method: str, description: ModelDescription, batch: int, n_classes: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    _training(method, description, batch, n_classes, steps, seed=1)()  # warm-up: lazy init of torch
    run = _training(method, description, batch, n_classes, steps, seed=0)  # data exist before the baseline
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_bytes("VmRSS:")
    peaks, layer_bytes = [], {}

    def probe(phase, layer):
        # per layer: the peak above the RSS at the start of its update (its gradients and activations)
        if phase == "start":
            peaks.append(_status_bytes("VmHWM:"))
            Path("/proc/self/clear_refs").write_text("5")
            layer_bytes[layer] = _status_bytes("VmRSS:")
        else:
            # a layer whose update frees more than it allocates (the previous output) adds nothing
            layer_bytes[layer] = max(0, _status_bytes("VmHWM:") - layer_bytes[layer])

    run(probe)
    peaks.append(_status_bytes("VmHWM:"))
    return {"peak_bytes": max(peaks) - base, "layer_bytes": [layer_bytes[k] for k in sorted(layer_bytes)]}


def measure_torch(method: str, layers, batch: int, n_classes: int = 10, steps: int = 2) -> dict:
    """Float32 training ('ff' or 'backprop') of `layers` (a ModelDescription, or an MLP's sizes) measured in
    a fresh process: peak_bytes it adds to the process, and for FF layer_bytes, what each layer's update
    adds on top of what was live before it."""
    description = layers if isinstance(layers, ModelDescription) else ModelDescription.dense(layers)
    if method not in ("ff", "backprop"):
        raise EdgeFFError(f"unknown training method '{method}' (ff or backprop)")
    if not Path("/proc/self/clear_refs").exists():
        raise EdgeFFError("measuring torch memory needs Linux (/proc/self/clear_refs); run without --measure")
    cmd = [sys.executable, "-m", "edgeff.train.torch_memory", method,
           json.dumps(description.to_header()), str(batch), str(n_classes), str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV}, check=False)
    if done.returncode != 0:
        raise EdgeFFError(f"memory measurement failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    _method, _layers, _batch, _classes, _steps = sys.argv[1:6]
    print(json.dumps(_child(_method, ModelDescription.from_header(json.loads(_layers)), int(_batch), int(_classes),
                            int(_steps))))
