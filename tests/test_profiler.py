"""The profiler: hardware profiles, analytic memory and energy against hand-computed cases, measurement
that measures, and `edgeff profile` with its plots."""
import json
import struct
import tomllib

import pytest

from edgeff.errors import EdgeFFError
from edgeff.profiler.energy_model import layer_costs, total, with_energy
from edgeff.profiler.hw_profile import PROFILES_DIR, load_profile, profile_from_dict, profile_names
from edgeff.profiler.memory_model import (
    fits,
    largest_width,
    layer_memory,
    layer_update_bytes,
    peak_bytes,
)
from edgeff.runtime.memory_plan import plan_summary, training_plan
from edgeff.train.torch_memory import measure_torch
from tests.conftest import run_cli


def test_the_shipped_boards_load_with_a_source_for_every_figure():
    names = profile_names()
    for required in ("nrf52840", "stm32f746", "rp2040", "esp32s3", "mps2-an386", "loihi"):
        assert required in names
    for name in names:
        p = load_profile(name)
        assert set(p.sources) == set(p.values) and all(len(s) > 10 for s in p.sources.values())
    assert load_profile("nrf52840").energy_per_cycle_pj == pytest.approx(52.0 * 3.0)


def _raw(name="nrf52840"):
    return tomllib.loads((PROFILES_DIR / f"{name}.toml").read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("clock_hz"), "field 'clock_hz' is missing"),
    (lambda r: r["supply_v"].pop("source"), "field 'supply_v' has no source"),
    (lambda r: r["sram_bytes"].update(value="lots"), "field 'sram_bytes' needs a numeric value"),
    (lambda r: r["cycles_per_int8_mac"].update(value=-1), "field 'cycles_per_int8_mac' must be a finite positive"),
    (lambda r: r["e_sram_access_pj"].update(value=float("inf")), "field 'e_sram_access_pj' must be a finite"),
    (lambda r: r.update(kind="gpu"), "field 'kind' must be one of"),
    (lambda r: r.update(volts={"value": 1, "source": "x"}), "unknown field(s) ['volts']"),
    (lambda r: r["sram_reserved_bytes"].update(value=10**9), "leaves no SRAM"),
])
def test_a_malformed_profile_is_refused_with_the_field_named(edit, message):
    raw = _raw()
    edit(raw)
    with pytest.raises(EdgeFFError, match=".*" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        profile_from_dict(raw, "board.toml")


def test_an_unknown_board_names_the_known_ones(tmp_path):
    with pytest.raises(EdgeFFError, match="no hardware profile 'nrf9999'.*nrf52840"):
        load_profile("nrf9999")
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = \n")
    with pytest.raises(EdgeFFError, match="not valid TOML"):
        load_profile(str(bad))


def test_float32_memory_matches_a_hand_computed_network():
    # sizes [4, 3, 2], batch 1. FF layer 1: 15 params -> weights 60 B, Adam 120, grads 60,
    # activations 4 B * 2 rows * (2*4 + 4*3) = 160, Adam scratch 2 * 4 * 12 = 96.
    ff = layer_memory("ff", "float32", [4, 3, 2], 1, 2)
    assert [(r.weights, r.update_state, r.gradients, r.activations, r.scratch) for r in ff] == \
        [(60, 120, 60, 160, 96), (32, 64, 32, 112, 48)]
    assert peak_bytes("ff", "float32", ff) == 180 + 96 + 220
    bp = layer_memory("backprop", "float32", [4, 3, 2], 1, 2)
    assert [(r.name, r.activations, r.scratch) for r in bp] == \
        [("layer 1", 24, 96), ("layer 2", 8, 48), ("classifier", 16, 32)]
    assert peak_bytes("backprop", "float32", bp) == (180 + 96 + 72) + (60 + 32 + 24) + 96


def test_int8_ff_memory_is_the_runtime_memory_plan_and_backprop_is_hand_computed():
    plan = plan_summary(training_plan([784, 64, 32], 10, [2]))
    int8_ff = peak_bytes("ff", "int8", layer_memory("ff", "int8", [784, 64, 32], 1, 10, [2]))
    assert int8_ff == plan["sram_bytes"] + plan["flash_bytes"]
    # backprop [4, 3, 2], 2 classes: layer 1 = weights 12+12, masters 24+12, constants 24, output+delta 3*5
    bp = layer_memory("backprop", "int8", [4, 3, 2], 1, 2)
    assert [(r.name, r.total) for r in bp] == [("shared", 4), ("layer 1", 99), ("layer 2", 60),
                                                ("classifier", 54)]
    # a batch scales the activations and adds int32 gradient accumulators
    assert layer_memory("backprop", "int8", [4, 3, 2], 2, 2)[1].gradients == 4 * (12 + 3)


def test_largest_width_is_the_boundary_of_what_fits():
    sram, flash = 224 * 1024, 1024 * 1024
    for method in ("ff", "backprop"):
        w = largest_width(method, [784, 64, 32], sram, flash)
        assert fits(layer_memory(method, "int8", [784, w, w]), sram, flash)
        assert not fits(layer_memory(method, "int8", [784, w + 1, w + 1]), sram, flash)
    assert largest_width("ff", [784, 64], 100, flash) == 0


def test_energy_counts_and_joules_match_a_hand_computed_network():
    raw = {"name": "toy", "kind": "mcu", "description": "round numbers"}
    values = {"sram_bytes": 1000, "flash_bytes": 1000, "sram_reserved_bytes": 0, "clock_hz": 1e6,
              "cycles_per_int8_mac": 2, "cycles_per_fp32_mac": 4, "cycles_per_weight_update": 3,
              "run_current_ua_per_mhz": 10, "supply_v": 2, "e_int8_add_pj": 1, "e_int8_mult_pj": 1,
              "e_int32_add_pj": 1, "e_int32_mult_pj": 2, "e_fp32_add_pj": 1, "e_fp32_mult_pj": 1,
              "e_sram_access_pj": 8, "e_flash_access_pj": 16, "e_dram_access_pj": 100}
    toy = profile_from_dict({**raw, **{k: {"value": v, "source": "test"} for k, v in values.items()}})
    ff = with_energy(layer_costs("train_ff", [4, 3, 2], 2), toy)
    assert [(r.macs, r.updates) for r in ff] == [(48, 12), (24, 6)]
    assert ff[0].cycles == 48 * 2 + 12 * 3
    assert ff[0].energy_board_uj == pytest.approx((48 * 2 + 12 * 3) * 10 * 2 * 1e-6)
    # op energy: MACs (1+1 pJ) + updates (2+2*1 pJ) + SRAM bytes (2*12 weights + 12*5 update + 4*(4+3)) * 1 pJ
    assert ff[0].energy_op_uj == pytest.approx((48 * 2 + 12 * 4 + (24 + 60 + 28)) * 1e-6)
    bp = layer_costs("train_backprop", [4, 3, 2], 2)
    assert [(r.name, r.macs) for r in bp] == [("layer 1", 24), ("layer 2", 18), ("classifier", 12)]
    assert total(layer_costs("inference_one_pass", [4, 3, 2], 2, head_inputs=2), "macs") == 12 + 6 + 4
    assert total(layer_costs("inference_multi_pass", [4, 3, 2], 2), "macs") == 2 * (12 + 6)
    loihi = with_energy(layer_costs("train_ff", [4, 3, 2], 2), load_profile("loihi"))
    assert loihi[0].energy_board_uj == pytest.approx((48 * 23.6 + 12 * 120.0 + 6 * 81.0) * 1e-6)


def test_torch_measurement_measures_and_agrees_with_the_analytic_model():
    small = measure_torch("ff", [784, 256], 1)["peak_bytes"]
    large = measure_torch("ff", [784, 1024], 1)["peak_bytes"]
    assert large > 3 * small
    for method in ("ff", "backprop"):
        measured = measure_torch(method, [784, 1024, 1024], 64)
        modelled = peak_bytes(method, "float32", layer_memory(method, "float32", [784, 1024, 1024], 64))
        assert measured["peak_bytes"] == pytest.approx(modelled, rel=0.1)
    per_layer = layer_update_bytes(layer_memory("ff", "float32", [784, 1024, 1024], 64))
    assert measured["layer_bytes"] == [] and len(per_layer) == 2
    ff_layers = measure_torch("ff", [784, 1024, 1024], 64)["layer_bytes"]
    assert ff_layers == pytest.approx(per_layer, rel=0.1) and ff_layers[1] > ff_layers[0]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_profile_command_prints_measures_and_plots(int_model, tmp_path):
    _, int_path, _ = int_model
    res = run_cli("profile", int_path, "--board", "rp2040", "--measure", "--out", tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    plan = json.loads(run_cli("memory-plan", int_path, "--json").stdout)
    assert result["memory"]["ff_int8"]["peak_bytes"] == plan["sram_bytes"] + plan["flash_bytes"]
    assert result["measured"]["ff_int8_numpy"]["measured_bytes"] > 0
    assert result["fit"]["train_ff_int8"]["fits"] is True
    for path in result["plots"]:
        width, height = _png_size(tmp_path / path.rsplit("/", 1)[-1])
        assert 600 <= width <= 800 and 300 <= height <= 460   # 7.2 x 4.0 in at 110 dpi, tight bounding box
    text = run_cli("profile", int_path, "--board", "loihi", "--out", tmp_path)
    assert text.returncode == 0 and "train_ff" in text.stdout and "Fit (int8" in text.stdout


def test_profile_command_refuses_bad_input(int_model, tmp_path):
    _, int_path, _ = int_model
    res = run_cli("profile", int_path, "--board", "nrf9999")
    assert res.returncode == 2 and "no hardware profile 'nrf9999'" in res.stderr
    res = run_cli("profile", int_path, "--board", "nrf52840", "--batch", "0")
    assert res.returncode == 2 and "argument --batch: 0 is too small" in res.stderr
