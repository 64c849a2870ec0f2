"""Random translations of training images for layered networks ([train] shift, edgeff/train/augment.py)."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from edgeff.errors import EdgeFFError
from edgeff.train.augment import random_shifts
from edgeff.train.config import config_from_dict
from tests.conftest import train_tiny

LAYERED = """
name = "tinyshift"
[model]
input_shape = [1, 12, 12]
objective = "cwc"
layers = [{{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1, pool = 2}}]
[train]
epochs = 1
batch_size = 16
lr = 0.01
schedule = "greedy"
eval_samples = 50
shift = {shift}
"""


def test_each_image_moves_by_its_own_offset_and_the_border_is_zero():
    x = torch.zeros(300, 2, 6, 7)
    x[:, :, 2, 3] = 1.0
    moved = random_shifts(x, 2, np.random.default_rng(5))
    offsets = np.random.default_rng(5).integers(-2, 3, size=(300, 2))
    assert len(np.unique(offsets, axis=0)) == 25              # every offset of a 5x5 window occurs
    for i in range(300):
        for channel in range(2):
            (row, col), = np.argwhere(moved[i, channel].numpy() == 1.0)
            assert (row - 2, col - 3) == tuple(offsets[i])
    assert moved.sum() == x.sum()                              # nothing else appears
    full = random_shifts(torch.ones(50, 1, 5, 5), 1, np.random.default_rng(0))
    assert (full.flatten(1).sum(1) < 25).sum() > 40            # most moved images lose a zero-filled edge


def test_shift_is_checked_and_refused_for_an_mlp():
    layered = {"model": {"input_shape": [1, 12, 12], "layers": [{"kind": "conv2d", "out_channels": 10, "kernel": 3}]}}
    assert config_from_dict({**layered, "train": {"shift": 2}}).train.shift == 2
    for bad, message in ((-1, "from 0 to 8"), (9, "from 0 to 8"), (1.5, "'shift' must be int")):
        with pytest.raises(EdgeFFError, match=message):
            config_from_dict({**layered, "train": {"shift": bad}})
    with pytest.raises(EdgeFFError, match="'shift' moves images for a layered network"):
        config_from_dict({"model": {"sizes": [144, 20]}, "train": {"shift": 1}})
    assert "shift" not in config_from_dict({"model": {"sizes": [144, 20]}}).to_dict()["train"]


def test_a_shifted_run_trains_other_weights_than_an_unshifted_one(tmp_path):
    weights = []
    for shift in (0, 2):
        model, _ = train_tiny(tmp_path / f"s{shift}", LAYERED.format(shift=shift), n_train=200, n_test=50, side=12)
        weights.append(load_file(model)["layers.0.conv.weight"])
    assert weights[0].shape == weights[1].shape and not np.allclose(weights[0], weights[1])
