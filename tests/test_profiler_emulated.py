"""`edgeff profile` on a board whose core QEMU emulates: the int8 inference and FF training cycles are the
instructions the self-test firmware runs there (firmware_bridge.instruction_counts), marked as measured; a
model the firmware cannot run, or a machine without the ARM toolchain, keeps the estimate with a notice."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from edgeff.app.options import dataset_of
from edgeff.app.profile import SAMPLES
from edgeff.model_file import load_model
from edgeff.profiler.energy_model import (
    ESTIMATE,
    MEASURED,
    MeasuredInstructions,
    layer_costs,
    with_energy,
    with_measured,
)
from edgeff.profiler.hw_profile import load_profile
from edgeff.profiler.profile_report import format_table
from tests.conftest import run_cli

TOOLCHAIN = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_toolchain = pytest.mark.skipif(not TOOLCHAIN, reason="needs gcc-arm-none-eabi and qemu-system-arm")
BOARD = load_profile("mps2-an386")


def test_measured_instructions_replace_the_int8_cycles_of_inference_and_ff_training():
    measured = MeasuredInstructions(layers=(1000.0, 300.0), train_step=9000.0)
    one = with_measured("inference_one_pass", with_energy(layer_costs("inference_one_pass", [4, 3, 2], 2, 2), BOARD),
                        measured, BOARD, 2)
    assert [(r.cycles, r.cycles_source) for r in one[:2]] == [(1000.0, MEASURED), (300.0, MEASURED)]
    assert one[2].name == "head" and one[2].cycles_source == ESTIMATE and one[2].cycles == 2 * 2 * 2.0
    assert one[0].energy_board_uj == pytest.approx(1000 * BOARD.energy_per_cycle_pj * 1e-6)
    multi = with_measured("inference_multi_pass", with_energy(layer_costs("inference_multi_pass", [4, 3, 2], 2),
                                                              BOARD), measured, BOARD, 2)
    assert [r.cycles for r in multi] == [2000.0, 600.0]
    train = with_measured("train_ff", with_energy(layer_costs("train_ff", [4, 3, 2], 2), BOARD), measured, BOARD, 2)
    estimated = with_energy(layer_costs("train_ff", [4, 3, 2], 2), BOARD)
    assert sum(r.cycles for r in train) == pytest.approx(9000.0)
    assert train[0].cycles / train[1].cycles == pytest.approx(estimated[0].cycles / estimated[1].cycles)
    assert all(r.cycles_source.startswith(MEASURED) for r in train)
    backprop = with_measured("train_backprop", with_energy(layer_costs("train_backprop", [4, 3, 2], 2), BOARD),
                             measured, BOARD, 2)
    assert {r.cycles_source for r in backprop} == {ESTIMATE}


@needs_toolchain
def test_the_profile_of_an_emulated_board_takes_the_self_tests_instructions(int_model, tmp_path):
    from firmware_bridge import instruction_counts

    _, int_path, data_dir = int_model
    res = run_cli("profile", int_path, "--board", "mps2-an386", "--data-dir", data_dir, "--out", tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    energy = result["energy"]
    if "norm15" in int_path.name:    # the firmware trains int8 normalized inputs only: the estimate stays
        assert "16 bits" in res.stderr and "measured_instructions" not in result
        assert {energy[w]["int8"]["cycles_source"] for w in energy} == {ESTIMATE}
        return
    data = dataset_of(load_model(int_path)[1], data_dir).train
    counts = instruction_counts.measure(int_path, data.images[:SAMPLES], data.labels[:SAMPLES],
                                        tmp_path / "selftest.elf")
    assert counts["same"]
    whole = [layer["whole"] for layer in counts["layers"]]
    one = energy["inference_one_pass"]["int8"]
    assert [r["cycles"] for r in one["layers"][:-1]] == pytest.approx(whole)
    assert [r["cycles_source"] for r in one["layers"]] == [MEASURED, MEASURED, ESTIMATE]
    assert [r["cycles"] for r in energy["inference_multi_pass"]["int8"]["layers"]] == \
        pytest.approx([10 * w for w in whole])
    train = energy["train_ff"]["int8"]
    assert train["total_cycles"] == pytest.approx(counts["step"])
    assert train["total_energy_board_uj"] == pytest.approx(counts["step"] * BOARD.energy_per_cycle_pj * 1e-6)
    assert train["cycles_source"].startswith(MEASURED) and energy["train_backprop"]["int8"]["cycles_source"] == ESTIMATE
    assert "instructions, not cycles" in result["measured_instructions"]["note"]
    assert result["measured_instructions"]["train_step"] == pytest.approx(counts["step"])
    estimate = json.loads(run_cli("profile", int_path, "--board", "mps2-an386", "--no-emulate", "--out", tmp_path,
                                  "--json").stdout)["energy"]
    for workload in ("inference_one_pass", "inference_multi_pass", "train_ff"):
        assert energy[workload]["int8"]["total_cycles"] != estimate[workload]["int8"]["total_cycles"]
        assert estimate[workload]["int8"]["cycles_source"] == ESTIMATE
    text = format_table(result)     # the command's text, from the same result
    assert MEASURED in text and "1 to 1.3 cycles per instruction" in text
    no_data = run_cli("profile", int_path, "--board", "mps2-an386", "--data-dir", tmp_path / "none", "--out", tmp_path)
    assert no_data.returncode == 0 and "are estimates: no dataset directory at" in no_data.stderr


def test_without_the_toolchain_the_estimate_stays_with_a_notice(int_model, tmp_path):
    _, int_path, data_dir = int_model
    empty = tmp_path / "bin"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "edgeff", "profile", int_path, "--board", "mps2-an386",
                          "--data-dir", data_dir, "--out", tmp_path, "--json"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PATH": str(empty)})
    assert res.returncode == 0, res.stderr
    energy = json.loads(res.stdout)["energy"]
    assert {energy[w]["int8"]["cycles_source"] for w in energy} == {ESTIMATE}
    notice = res.stderr.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith("note: the int8 cycles on mps2-an386 are estimates")
    assert "arm-none-eabi-gcc and qemu-system-arm are not installed" in notice[0]
    assert "apt-get install gcc-arm-none-eabi qemu-system-arm" in notice[0]
