"""Board ports chosen by URL (firmware_bridge/ports.py): virtual://, qemu://, the faults:// wrapper, and the
old special strings refused with their new names. Real sockets and a real virtual board process."""
import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.profiler.hw_profile import load_profile
from firmware_bridge.board_image import unpack_image
from firmware_bridge.driver import BoardLink
from firmware_bridge.ports import VirtualDefaults, checkpoints_outlive, open_board
from firmware_bridge.serial_handlers.protocol_faults import split_url
from firmware_bridge.virtual_board import VirtualBoard
from tests.conftest import run_cli
from tests.test_serial_bridge import _reference_image, _stream


@pytest.mark.parametrize("old, new", [("virtual", "virtual://"), ("emulate", "qemu://")])
def test_old_port_strings_are_refused_with_their_new_spelling(old, new, tmp_path):
    res = run_cli("board", "info", "--port", old)
    assert res.returncode == 2 and f"now spelled {new}" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("url, message", [
    ("virtual://?colour=red", "unknown option(s) colour"),
    ("virtual://somewhere", "options go in the query"),
    ("virtual://?baud=fast", "baud='fast' is not a whole number"),
    ("qemu://stm32f746", "the emulated boards are qemu://mps2-an386"),
    ("faults://corrupt=0.01", "faults://SPEC@URL"),
    ("faults://drop=0.1@virtual://", "drop are frame faults"),
    ("faults://zap=1@virtual://", "unknown fault 'zap'"),
    ("faults://corrupt=0.01@emulate", "now spelled qemu://"),
])
def test_bad_board_urls_are_refused_by_name(url, message):
    res = run_cli("board", "info", "--port", url)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_virtual_url_query_chooses_the_board(tmp_path):
    with open_board(f"virtual://?profile=rp2040&storage={tmp_path / 'flash'}", VirtualDefaults()) as link:
        rp2040 = link.info.sram_budget
    with open_board("virtual://", VirtualDefaults(storage=str(tmp_path / "flash2"))) as link:
        nrf = link.info.sram_budget
    assert rp2040 != nrf and (tmp_path / "flash").is_dir() and (tmp_path / "flash2").is_dir()


@pytest.mark.parametrize("board", ["mps2-an386", "netduinoplus2"])
def test_a_virtual_firmware_board_states_the_model_ram_its_firmware_gives(board, tmp_path):
    """For a board with a [firmware] table the virtual board's budget is the firmware's image and scratch
    buffers (what the QEMU firmware's INFO says), not the profile's SRAM less its reserve."""
    profile = load_profile(board)
    with open_board(f"virtual://?profile={board}&storage={tmp_path / 'flash'}", VirtualDefaults()) as link:
        budget = link.info.sram_budget
    assert budget == profile.firmware.image_bytes + profile.firmware.scratch_bytes
    assert budget != profile.sram_bytes - profile.sram_reserved_bytes


def test_only_an_emulated_board_loses_its_checkpoints():
    assert not checkpoints_outlive("qemu://") and not checkpoints_outlive("faults://corrupt=0.1@qemu://")
    assert checkpoints_outlive("virtual://") and checkpoints_outlive("socket://127.0.0.1:5000")
    assert split_url("faults://corrupt=0.5,seed=2@socket://h:1")[1] == "socket://h:1"


def test_faults_wrapper_damages_the_line_and_training_still_ends_bit_identical(small_model, tmp_path):
    """faults:// damages bytes on the host's side of a clean virtual board's line: the link sees bad frames
    and resends, and 60 samples trained through it end with the weights of the runtime's clean run."""
    int_path, data_dir = small_model
    with VirtualBoard(tmp_path / "clean") as board, BoardLink(board.url) as link:
        link.info  # noqa: B018 (HELLO answered on a clean line)
        assert link.stats["bad_frames"] == 0 and link.stats["resent"] == 0
    out = tmp_path / "trained.safetensors"
    with VirtualBoard(tmp_path / "flash") as board:
        url = f"faults://corrupt=0.01,byte_drop=0.005,byte_duplicate=0.005,seed=4@{board.url}"
        with BoardLink(url) as link:
            for _ in range(30):
                link.metrics()
            damaged = link.stats["bad_frames"] + link.stats["resent"] + link.stats["timeouts"]
        assert damaged > 0, link.stats
        res = run_cli("board", "train", "--port", url, "--model", int_path, "--out", out, "--samples", 60,
                      "--data-dir", data_dir, "--lr-shift", 16, "--seed", 3, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    stream, _ = _stream(data_dir, n=60, seed=3)
    reference = unpack_image(_reference_image(int_path, stream))[0]
    trained = load_model(out)[0]
    assert all(np.array_equal(trained[k], v) for k, v in reference.items())


def test_a_wrapped_url_that_is_not_a_port_is_an_error_not_a_traceback():
    with pytest.raises(EdgeFFError, match="not a serial port or pyserial URL"):
        BoardLink("faults://corrupt=0.01@nonsense://x")
