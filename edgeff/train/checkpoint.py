"""Training checkpoints: network, Adam state and progress in one EdgeFF file (kind "checkpoint").

Everything random in training is derived from (seed, epoch), so a run resumed from the checkpoint written
after epoch k continues exactly as the uninterrupted run would have.
"""
import json
from pathlib import Path

import numpy as np
import torch

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model, save_model


def save_checkpoint(path, net, optimizer, header: dict):
    tensors = {f"model.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{pid}.{key}"] = np.asarray(torch.as_tensor(value).cpu().numpy())
    save_model(path, tensors, {**header, "optimizer_groups": opt_state["param_groups"]}, kind="checkpoint")


def load_checkpoint(path, net, optimizer, config: dict, data_sha256: str) -> dict:
    """Restore net and optimizer in place from `path`; return the checkpoint header."""
    tensors, header = load_model(path, kind="checkpoint")
    if json.dumps(header.get("config"), sort_keys=True) != json.dumps(config, sort_keys=True):
        raise EdgeFFError(f"{path}: this checkpoint was written with a different config; pass --fresh to "
                          "start over (the checkpoint is replaced) or choose another --out directory")
    if header.get("data_sha256") != data_sha256:
        raise EdgeFFError(f"{path}: this checkpoint was trained on different data files; pass --fresh to "
                          "start over or point --data-dir at the original data")
    model_state = {k[len("model."):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("model.")}
    state = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = torch.from_numpy(value)
    try:
        net.load_state_dict(model_state)
        optimizer.load_state_dict({"state": state, "param_groups": header["optimizer_groups"]})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EdgeFFError(f"{path}: the checkpoint does not match this network ({exc}); pass --fresh") from None
    return header


def resume(path, fresh: bool, net, optimizer, config: dict, data_sha256: str) -> tuple[list, int, float]:
    """(history, epochs done, seconds spent) of the run checkpointed at `path`, with net and optimizer restored;
    a fresh start's ([], 0, 0.0) when there is no checkpoint or `fresh` asks to start over."""
    if fresh or not Path(path).exists():
        return [], 0, 0.0
    header = load_checkpoint(path, net, optimizer, config, data_sha256)
    return header["history"], header["epoch"], header["elapsed_s"]
