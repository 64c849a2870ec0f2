"""On-device learning scenarios (firmware_bridge/scenarios.py) and the sensor shifts they use: what the host and
the board each see, and `edgeff board scenario` end to end on a virtual board, bit-identical to the runtime."""
import json

import numpy as np
import pytest

from edgeff.data.datasets import load_dataset
from edgeff.data.idx import read_idx
from edgeff.data.sensor_shifts import add_noise, gain_offset, rotate, shifted, write_shifted_copy
from edgeff.errors import EdgeFFError
from edgeff.runtime.int_model import IntFFModel
from firmware_bridge.scenarios import drift, new_classes
from tests.conftest import run_cli, write_dataset


def test_rotation_turns_about_the_centre_and_keeps_a_zero_turn():
    images = np.random.default_rng(0).integers(0, 256, (5, 49), dtype=np.uint8)
    assert np.array_equal(rotate(images, 0), images)
    quarter = rotate(images, 90).reshape(5, 7, 7)
    assert any(np.array_equal(quarter, np.rot90(images.reshape(5, 7, 7), k, axes=(1, 2))) for k in (1, 3))
    assert not np.array_equal(rotate(images, 12), images)
    with pytest.raises(EdgeFFError, match="square"):
        rotate(images[:, :48], 5)


def test_exposure_and_noise_stay_in_the_pixel_range_and_are_repeatable():
    images = np.array([[0, 100, 255]], np.uint8)
    assert gain_offset(images, 0.6, 60).tolist() == [[60, 120, 213]]
    assert gain_offset(images, 2.0, 0).tolist() == [[0, 200, 255]]
    noisy = add_noise(np.full((2, 100), 128, np.uint8), 20, seed=3)
    assert noisy.dtype == np.uint8 and np.array_equal(noisy, add_noise(np.full((2, 100), 128, np.uint8), 20, 3))
    assert 10 < noisy.astype(float).std() < 30
    with pytest.raises(EdgeFFError, match="unknown sensor shift"):
        shifted(images, "fog")



@pytest.mark.parametrize("shift", ["exposure", "mount"])
def test_a_shifted_copy_holds_the_cameras_images_split_as_the_original(tmp_path, shift):
    source = write_dataset(tmp_path / "clean", n_train=300, n_test=80)   # gzipped; the copy is raw IDX
    out = write_shifted_copy(source, tmp_path / shift, shift)
    for split, seed in (("train", 0), ("t10k", 1)):
        clean = read_idx(source / f"{split}-images-idx3-ubyte.gz")
        moved = read_idx(out / f"{split}-images-idx3-ubyte")
        assert moved.shape == clean.shape and moved.dtype == np.uint8
        assert np.array_equal(moved.reshape(len(moved), -1), shifted(clean.reshape(len(clean), -1), shift, seed))
        assert not np.array_equal(moved, clean)
        assert np.array_equal(read_idx(out / f"{split}-labels-idx1-ubyte"),
                              read_idx(source / f"{split}-labels-idx1-ubyte.gz"))
    original, camera = load_dataset(source, val_size=40), load_dataset(out, val_size=40)
    assert np.array_equal(camera.val.labels, original.val.labels) and len(camera.train) == len(original.train)
    if shift == "exposure":   # no noise: the recorded split's images are the original's, shifted
        assert np.array_equal(camera.val.images, shifted(original.val.images, shift))


def test_a_shifted_copy_refuses_bad_input_in_one_line(tmp_path):
    source = write_dataset(tmp_path / "clean", n_train=50, n_test=20)
    with pytest.raises(EdgeFFError, match="overwrite its source"):
        write_shifted_copy(source, source, "exposure")
    with pytest.raises(EdgeFFError, match="unknown sensor shift"):
        write_shifted_copy(source, tmp_path / "out", "fog")
    with pytest.raises(EdgeFFError, match="missing"):
        write_shifted_copy(tmp_path / "out", tmp_path / "out2", "mount")

def test_the_host_never_sees_the_new_classes_and_the_board_gets_them_with_replay(tmp_path):
    data = load_dataset(write_dataset(tmp_path / "data", n_train=400, n_test=100), val_size=50)
    scenario = new_classes(data, new=(8, 9), replay=30, replay_ratio=2)
    assert not np.isin(scenario.host.train.labels, [8, 9]).any() and not np.isin(scenario.host.val.labels, [8, 9]).any()
    fresh = np.isin(scenario.stream.labels, [8, 9])
    assert 2 * fresh.sum() == (~fresh).sum() and fresh.sum() == np.isin(data.train.labels, [8, 9]).sum()
    replayed = {img.tobytes() for img in scenario.stream.images[~fresh]}
    assert len(replayed) == 30 and replayed <= {img.tobytes() for img in scenario.host.train.images}
    assert set(scenario.evaluations["new classes"].labels) <= {8, 9}
    assert scenario.replay_flash_bytes == 30 * (2 + 784)
    assert len(new_classes(data, new=(8, 9), replay=0).stream) == fresh.sum()
    with pytest.raises(EdgeFFError, match="new classes"):
        new_classes(data, new=(12,))
    moved = drift(data, "exposure")
    assert moved.stream.images.max() <= 213 and np.array_equal(moved.evaluations["original"].images, data.test.images)


@pytest.mark.parametrize("name, extra", [("new-classes", ["--replay", "20"]), ("drift", ["--shift", "mount"])])
def test_board_scenario_trains_on_a_virtual_board_bit_identically(tmp_path, name, extra):
    data_dir = write_dataset(tmp_path / "data", n_train=400, n_test=100)
    out = tmp_path / "run"
    res = run_cli("board", "scenario", name, "--out", out, "--samples", "60", "--host-epochs", "1",
                  "--data-dir", data_dir, "--storage", tmp_path / "flash", "--json", *extra)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["runtime_identical"] and result["samples"] == 60
    assert [c["samples"] for c in result["curve"]] == [0, 7, 15, 22, 30, 37, 45, 52, 60]
    assert result["curve"][0] == {"samples": 0, **result["before"]} and result["curve"][-1] == {"samples": 60,
                                                                                                **result["after"]}
    assert json.loads((out / "scenario.json").read_text())["after"] == result["after"]
    assert (out / "scenario.png").read_bytes()[:4] == b"\x89PNG" and (out / "board-trained-int8.safetensors").exists()
    if name == "new-classes":      # where the old classes' accuracy went, from the host's model as given
        test = load_dataset(data_dir).test
        old = test.labels < 8
        predicted = IntFFModel.from_file(out / "host-int8.safetensors").multi_pass_scores(test.images[old]).argmax(1)
        assert result["old_taken_for_new"]["before"] == pytest.approx(np.isin(predicted, [8, 9]).mean())
        assert 0 <= result["old_taken_for_new"]["after"] <= 1
    else:
        assert result["old_taken_for_new"] is None
    bad = run_cli("board", "scenario", "new-classes", "--out", tmp_path / "other", "--new", "eight")
    assert bad.returncode != 0 and "class numbers" in bad.stderr and "Traceback" not in bad.stderr
