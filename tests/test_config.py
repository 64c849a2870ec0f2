import pytest

from edgeff.errors import EdgeFFError
from edgeff.package_data import MODELS_DIR
from edgeff.train.config import config_from_dict, load_config


def test_defaults_and_head_layers():
    cfg = config_from_dict({"model": {"sizes": [784, 100, 50, 20]}})
    assert cfg.n_layers == 3 and cfg.eval.head_layers == [2, 3] and cfg.eval.layers == "auto"


@pytest.mark.parametrize("raw, message", [
    ({"train": {"epoch": 3}}, "unknown key 'epoch'"),
    ({"trian": {}}, r"unknown section or key \[trian\]"),
    ({"train": {"loss": "mse"}}, "'loss' = 'mse' is not one of softplus, symba"),
    ({"train": {"lr": "fast"}}, "'lr' must be float"),
    ({"train": {"epochs": 0}}, "'epochs' must be at least 1"),
    ({"train": {"batch_size": 0}}, "full batch, is for the paper protocol only"),
    ({"model": {"sizes": [784]}}, "at least one hidden width"),
    ({"eval": {"layers": [3]}}, r"names layer\(s\) \[3\]; this network has layers 1..2"),
    ({"collab": {"mode": "fixed"}, "model": {"sizes": [784, 10]}}, "at least two hidden layers"),
    ({"train": {"warmup_epochs": -1.0}}, "'warmup_epochs' must be 0 or more"),
    ({"train": {"lr": float("inf")}}, "'lr' must be a finite number, got inf"),
    ({"model": {"sizes": [784, 10], "label_value": float("nan")}}, "'label_value' must be a finite number"),
    ({"train": {"val_fraction": 1.0}}, "'val_fraction' must lie between 0 and 1"),
    ({"train": {"val_fraction": 0.2, "val_size": 50}}, "'val_size' .* or 'val_fraction', not both"),
])
def test_bad_configs_are_refused_with_the_key_named(raw, message):
    raw = {**raw, "model": {"sizes": [784, 500, 500], **raw.get("model", {})}}
    with pytest.raises(EdgeFFError, match=message):
        config_from_dict(raw)


def test_an_empty_config_names_the_missing_network():
    with pytest.raises(EdgeFFError, match=r"\[model\] sizes is missing"):
        config_from_dict({})


def test_bad_toml_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("[train\nepochs = 2")
    with pytest.raises(EdgeFFError, match="broken.toml: not valid TOML"):
        load_config(p)


def test_every_shipped_config_loads():
    paths = sorted(MODELS_DIR.glob("*.toml"))
    assert len(paths) >= 7
    for p in paths:
        assert load_config(p).name == p.stem
