"""The integer training rule: deterministic, integer-only at every kernel boundary, local, resumable."""
import numpy as np
import pytest

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model, save_model
from edgeff.op_registry import facet
from edgeff.runtime import backend, c_kernels, int_fully_connected, int_training
from edgeff.runtime import int_model as int_model_module
from edgeff.runtime.int_model import IntFFModel, evaluate_int
from edgeff.runtime.int_training import (
    IntTrainer,
    IntTrainingConfig,
    load_trainer,
    sigmoid_table,
    trainer_tensors,
)
from edgeff.runtime.integer_hash import hash32
from edgeff.runtime.master_weights import weights_from_masters
from edgeff.runtime.reference_kernels import ReferenceKernels
from edgeff.runtime.requantize import rounding_divide_by_pot
from tests.reference_math import hash32_ref


def _trainer(int_path, **kw):
    return IntTrainer(IntFFModel.from_file(int_path), IntTrainingConfig(**kw))


def _train(trainer, data, steps, batch=1, start=0):
    for s in range(start, start + steps):
        idx = np.arange(s * batch, (s + 1) * batch) % len(data.train)
        trainer.step(data.train.images[idx], data.train.labels[idx])
    return trainer


def _state(trainer):
    return [m.copy() for m in trainer.weight_masters] + [b.copy() for b in trainer.bias_masters] + \
        [trainer.gamma_q.copy()] + [l.weight.copy() for l in trainer.model.layers]


def test_same_seed_same_weights_other_seed_other_weights(int_model):
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    a = _state(_train(_trainer(int_path, seed=3, lr_shift=16), data, 20))
    b = _state(_train(_trainer(int_path, seed=3, lr_shift=16), data, 20))
    c = _state(_train(_trainer(int_path, seed=4, lr_shift=16), data, 20))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("kernel_set", ["reference", "c"])
def test_no_float_crosses_any_kernel_boundary(int_model, monkeypatch, kernel_set):
    """Every array in or out of a kernel is integer, with the reference kernels and with the C ones."""
    if kernel_set == "c":
        try:
            c_kernels.library()
        except EdgeFFError:
            pytest.skip("no C compiler: the C kernels cannot build")
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    seen = []

    def guard(name, fn):
        def wrapped(*args, **kwargs):
            for v in list(args) + list(kwargs.values()) + [out := fn(*args, **kwargs)]:
                for arr in (v if isinstance(v, tuple) else (v,)):
                    if isinstance(arr, np.ndarray):
                        assert arr.dtype.kind in "iu", f"{name} saw {arr.dtype}"
                    assert not isinstance(arr, float), f"{name} saw a Python float"
            seen.append(name)
            return out
        return wrapped

    dense_runtime = facet("dense", "runtime")
    for module in (int_training, int_model_module, dense_runtime, int_fully_connected, c_kernels, ReferenceKernels):
        for name in ("l2_normalization", "accumulate", "requantize_output", "multiply_by_quantized_multiplier",
                     "goodness", "hash32", "rounding_divide_by_pot", "ff_layer", "label_rows", "requantize",
                     "l2_normalize", "update_weight_rows"):
            if hasattr(module, name) and callable(getattr(module, name)):
                monkeypatch.setattr(module, name, guard(f"{module.__name__}.{name}", getattr(module, name)))
    with backend.using(kernel_set):
        for mode, negatives in (("symba", "random"), ("softplus", "hard")):
            trainer = _trainer(int_path, loss=mode, lr_shift=16, negatives=negatives)
            trainer.collab_mode = "adaptive"
            _train(trainer, data, 3)
    names = {name.rsplit(".", 1)[1] for name in seen}
    if kernel_set == "reference":
        assert {"l2_normalization", "accumulate", "requantize_output", "goodness", "hash32"} <= names
    elif IntFFModel.from_file(int_path).layers[0].norm_bits == 7:
        # small batches run each layer fused in C; the hard negatives' multi-pass, the label rows
        assert {"ff_layer", "label_rows", "update_weight_rows", "hash32"} <= names
    else:   # int16 normalization: the C kernels one by one
        assert {"l2_normalize", "requantize", "update_weight_rows", "hash32"} <= names


def test_weights_are_always_the_rounded_masters(int_model):
    _, int_path, data_dir = int_model
    trainer = _train(_trainer(int_path, lr_shift=14), load_dataset(data_dir, val_size=100), 30, batch=4)
    for layer, master in zip(trainer.model.layers, trainer.weight_masters, strict=True):
        assert master.dtype == np.int16 and layer.weight.dtype == np.int8
        assert np.array_equal(layer.weight, np.clip(rounding_divide_by_pot(master.astype(np.int64), 8), -127, 127))
    assert any(not np.array_equal(m >> 8, IntFFModel.from_file(int_path).layers[i].weight)
               for i, m in enumerate(trainer.weight_masters))  # it did move


def test_update_is_local_to_each_layer(int_model):
    """With no collaboration, layer 1's update does not depend on layer 2's weights."""
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    a, b = _trainer(int_path, lr_shift=14), _trainer(int_path, lr_shift=14)
    for t in (a, b):
        t.gamma_q[:] = 0
    shape = b.model.layers[1].weight.shape
    b.model.layers[1].weight = np.random.default_rng(0).integers(-127, 128, shape).astype(np.int8)
    b.weight_masters[1] = b.model.layers[1].weight.astype(np.int16) << 8
    _train(a, data, 5)
    _train(b, data, 5)
    assert np.array_equal(a.weight_masters[0], b.weight_masters[0])
    assert not np.array_equal(a.weight_masters[1], b.weight_masters[1])


def test_collaboration_changes_the_update_and_gamma_learns_only_under_a_cff(int_model):
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    ff, cff = _trainer(int_path, lr_shift=14), _trainer(int_path, lr_shift=14)
    ff.gamma_q[:] = 0
    cff.gamma_q[:] = 256                        # gamma = 1.0
    _train(ff, data, 5)
    _train(cff, data, 5)
    assert not np.array_equal(ff.weight_masters[0], cff.weight_masters[0])
    assert cff.collab_mode == "fixed" and np.all(cff.gamma_q == 256)
    acff = _trainer(int_path, lr_shift=14, gamma_shift=20)
    acff.collab_mode = "adaptive"
    before = acff.gamma_q.copy()
    _train(acff, data, 10)
    assert not np.array_equal(before, acff.gamma_q)


def test_saved_state_resumes_exactly(int_model, tmp_path):
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    straight = _train(_trainer(int_path, lr_shift=15), data, 8)
    first = _train(_trainer(int_path, lr_shift=15), data, 4)
    _, header = load_model(int_path)
    path = save_model(tmp_path / "mid.safetensors", trainer_tensors(first),
                      {**header, "int_training": {"step": first.step_count}})
    resumed = _train(load_trainer(path, IntTrainingConfig(lr_shift=15)), data, 4, start=4)
    assert all(np.array_equal(x, y) for x, y in zip(_state(straight), _state(resumed), strict=True))


def test_tampered_master_weights_refused(int_model, tmp_path):
    _, int_path, data_dir = int_model
    trainer = _train(_trainer(int_path, lr_shift=15), load_dataset(data_dir, val_size=100), 2)
    tensors = trainer_tensors(trainer)
    tensors["layers.0.weight"] = (tensors["layers.0.weight"].astype(np.int16) + 3).clip(-127, 127).astype(np.int8)
    _, header = load_model(int_path)
    path = save_model(tmp_path / "bad.safetensors", tensors, header)
    with pytest.raises(EdgeFFError, match="not the rounding of its master"):
        load_trainer(path, IntTrainingConfig())


def test_integer_training_keeps_learning_on_tiny_data(int_model):
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    wide = IntFFModel.from_file(int_path).layers[0].norm_bits == 15
    trainer = _trainer(int_path, lr_shift=16 + (8 if wide else 0))  # int16 inputs: 2^8 larger gradients
    before = evaluate_int(trainer.model, data.val.images, data.val.labels, [1, 2], "multi")["multi_pass"]
    _train(trainer, data, 300)
    after = evaluate_int(trainer.model, data.val.images, data.val.labels, [1, 2], "multi")["multi_pass"]
    assert after >= before - 0.05 and after > 0.8


def test_bad_training_data_refused(int_model):
    trainer = _trainer(int_model[1])
    images = np.zeros((2, 784), np.uint8)
    with pytest.raises(EdgeFFError, match=r"labels must lie in 0..9; got 3..10"):
        trainer.step(images, np.array([3, 10]))
    with pytest.raises(EdgeFFError, match=r"labels must be 2 integers, one per image; got float64 \[2\]"):
        trainer.step(images, np.array([1.0, 2.0]))
    with pytest.raises(EdgeFFError, match=r"must be uint8 of shape \(N, 784\)"):
        trainer.step(np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))


def test_bad_training_config_refused():
    with pytest.raises(EdgeFFError, match="lr_shift 3 must be between 4 and 40"):
        IntTrainingConfig(lr_shift=3).check()
    with pytest.raises(EdgeFFError, match="loss 'mse' must be one of symba, softplus"):
        IntTrainingConfig(loss="mse").check()


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_sparse_update_equals_the_dense_update(int_model, monkeypatch, rounding):
    """Skipping units with a zero gradient changes no bit: compare with updating every row."""
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    skipped = []
    dense_runtime = facet("dense", "runtime")
    real = dense_runtime.active_rows
    monkeypatch.setattr(dense_runtime, "active_rows",
                        lambda row: skipped.append(row.shape[1] - len(real(row))) or real(row))
    sparse = _state(_train(_trainer(int_path, lr_shift=14, rounding=rounding), data, 15, batch=2))
    assert max(skipped) > 0  # some units really were skipped
    monkeypatch.setattr(dense_runtime, "active_rows", lambda row: np.arange(row.shape[1]))
    dense = _state(_train(_trainer(int_path, lr_shift=14, rounding=rounding), data, 15, batch=2))
    assert all(np.array_equal(x, y) for x, y in zip(sparse, dense, strict=True))


def test_weights_from_masters_is_rounding_divide_by_pot_on_every_int16():
    m = np.arange(-32768, 32768, dtype=np.int64)
    want = np.clip(rounding_divide_by_pot(m, 8), -127, 127)
    assert np.array_equal(weights_from_masters(m.astype(np.int16)), want)


def test_sigmoid_table_and_hash():
    t = sigmoid_table()
    assert t.dtype == np.int16 and t[128] == 16384 and np.all(np.diff(t.astype(int)) >= 0)
    assert t[0] == round(32768 / (1 + np.exp(8))) and t[-1] == round(32768 / (1 + np.exp(-127 / 16)))
    idx = np.arange(100_000)
    for seed, step in ((0, 0), (7, 123456), (0xFFFFFFFF, 1 << 31)):
        fast = hash32(seed, step, idx)
        assert all(int(fast[i]) == hash32_ref(seed, step, i) for i in range(0, 100_000, 997))
    bits = np.unpackbits(hash32(1, 2, idx).view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01
