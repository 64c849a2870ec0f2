"""`edgeff export --format arduino`: the Arduino/PlatformIO library compiles for a Cortex-M4F against a stand-in
for the Arduino core with RAM and flash that match the memory plan, and its sketch, built for the host with
Serial on a real pty, trains over the link to the NumPy runtime's exact bits."""
import json
import os
import shutil
import subprocess
import tty
from contextlib import contextmanager

import pytest

from edgeff.c_array import tflite_bytes_from_c_header
from edgeff.model_file import load_model
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainingConfig, load_trainer, trainer_tensors
from edgeff.runtime.memory_plan import plan_summary, training_plan
from firmware_bridge import arduino_build
from firmware_bridge import messages as m
from firmware_bridge.arduino_library import MAX_PAYLOAD
from firmware_bridge.board_export import board_model, scratch_bytes
from firmware_bridge.board_image import pack_image, unpack_image
from firmware_bridge.board_training import runtime_image, start_image, train_on_board
from firmware_bridge.driver import BoardLink
from firmware_bridge.framing import crc32, max_encoded_size
from tests.conftest import run_cli
from tests.test_board_layered import _stream as layered_stream
from tests.test_board_layered import conv  # noqa: F401 (a module fixture, by name)
from tests.test_serial_bridge import CONFIG, _stream

CONV_CONFIG = IntTrainingConfig(lr_shift=8, seed=3)   # the image holds no setting: any lr_shift the model takes


@pytest.fixture(scope="module")
def library(small_model, tmp_path_factory):
    int_path, _ = small_model
    out = tmp_path_factory.mktemp("arduino") / "EdgeFF"
    res = run_cli("export", int_path, "--format", "arduino", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    return out, json.loads(res.stdout)


def test_the_library_has_what_arduino_and_platformio_read(library):
    out, written = library
    properties = dict(line.split("=", 1) for line in (out / "library.properties").read_text().splitlines())
    assert properties["name"] == "EdgeFF" and properties["includes"] == "EdgeFF.h"
    assert json.loads((out / "library.json").read_text())["frameworks"] == ["arduino"]
    assert (out / "examples/TrainOverSerial/TrainOverSerial.ino").read_text().count("edgeff.poll()") == 1
    sources = {p.name for p in (out / "src").iterdir()}
    assert {"EdgeFF.h", "EdgeFF.cpp", "board_protocol.c", "ff_train.c", "board_model.h", "edgeff_config.h"} <= sources
    assert "fuzz_protocol.c" not in sources and "host_board.c" not in sources   # host-only test harnesses
    assert written["files"] == sum(1 for p in out.rglob("*") if p.is_file())


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="needs gcc-arm-none-eabi")
def test_the_library_links_for_a_cortex_m4f_within_the_memory_plan(library, small_model, tmp_path):
    """Linked for a Cortex-M4F with the nRF52840's flash and SRAM: the model image it trains in place is
    exactly the installed image (the memory plan's weights and master weights, with the image's constants) and
    the scratch holds the plan's activations; RAM stays within the board's and flash holds the compiled-in model."""
    out, written = library
    int_path, _ = small_model
    footprint = arduino_build.build_cortex_m(out, tmp_path / "build")
    arch = load_model(int_path)[1]["architecture"]
    plan = training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"])
    needed = {role: sum(b.bytes for b in plan if b.region == "sram" and b.role == role)
              for role in ("weights", "update_state", "activations")}
    installed = len(pack_image(trainer_tensors(load_trainer(int_path, CONFIG)), load_model(int_path)[1]))
    ram = footprint["ram_symbols"]
    assert ram["image"] == written["ram_bytes"]["model image with master weights"] == (installed + 7) // 8 * 8
    assert installed >= needed["weights"] + needed["update_state"]
    assert ram["scratch"] == (scratch_bytes(arch) + 7) // 8 * 8 >= needed["activations"] + arch["sizes"][0]
    assert ram["received"] == ram["reply"] == max_encoded_size(MAX_PAYLOAD)
    assert plan_summary(plan)["sram_bytes"] <= sum(ram.values()) <= footprint["ram_bytes"] < sum(ram.values()) + 64
    assert footprint["ram_bytes"] + footprint["stack_bytes"] <= footprint["board_sram_bytes"]
    model_flash = len(pack_image(*load_model(int_path)))
    assert ram.get("board_model") is None and model_flash < footprint["flash_bytes"] < model_flash + 64 * 1024


def _build_host(library, out):
    """The sketch as a host program whose Serial is its stdin and stdout (the host's gcc, the host stand-in)."""
    out.mkdir(parents=True)
    objects = arduino_build.compile_sketch("gcc", "g++", [], library, out, arduino_build.STANDIN / "standin_host.cpp")
    exe = out / "TrainOverSerial"
    arduino_build.run_build(["g++", *map(str, objects), "-o", str(exe)], "the link")
    return exe


@contextmanager
def _sketch_link(exe):
    """A BoardLink to the host-built sketch `exe`, its Serial on a pty, for as long as the `with` block."""
    board_end, host_end = os.openpty()
    tty.setraw(host_end)
    sketch = subprocess.Popen([exe], stdin=board_end, stdout=board_end)
    os.close(board_end)
    try:
        with BoardLink(os.ttyname(host_end), timeout=1.0) as link:
            yield link
    finally:
        os.close(host_end)
        sketch.wait(timeout=10)


def test_the_sketch_trains_over_a_pty_bit_identically(library, small_model, tmp_path, capfd):
    """The example sketch with the library, built for the host with Serial on a pty, answers EdgeFF's own
    driver: it boots with the compiled-in model (the runtime's image CRC), trains a windowed stream and reads
    back exactly the NumPy runtime's image, and its multi-pass scores are the runtime's. It has no storage
    for checkpoints: the host says so once and trains on."""
    out, _ = library
    int_path, data_dir = small_model
    installed = pack_image(trainer_tensors(load_trainer(int_path, CONFIG)), load_model(int_path)[1])
    stream, _ = _stream(data_dir, n=30, seed=4)
    with _sketch_link(_build_host(out, tmp_path / "host")) as link:
        assert link.info.model_loaded and link.info.image_crc == crc32(installed)
        assert link.info.name == "arduino-edgeff"
        result = train_on_board(link, int_path, stream, CONFIG, checkpoint_every=10, quiet=True)
        trained = IntFFModel.from_tensors(*unpack_image(result["image"]))
        for image in stream.images[:3]:
            scores = trained.multi_pass_scores(image[None])[0]
            assert link.infer(image) == (scores.argmax(), trained.head_logits(image[None]).argmax(),
                                         scores.tolist())
    assert result["image"] == runtime_image(int_path, stream, CONFIG)
    assert result["board_metrics"]["applied"] == 30 and not result["checkpoints_kept"]
    assert capfd.readouterr().err.count("keeps no checkpoint") == 1


def test_a_conv_models_library_compiles_in_the_image_board_train_loads(request, tmp_path):
    """The library of a layered CwC model: src/board_model.h holds the format-2 image `edgeff board train` loads
    (every block training), edgeff_config.h's capacities are that image and the scratch the firmware counts for it
    (its RAM check counts both), it links for the Cortex-M4F within the board's RAM, and the sketch built for the
    host boots with the image installed as sent (INFO's bytes and CRC, READ) and infers as the runtime's model."""
    int_path, data = request.getfixturevalue("conv")
    out = tmp_path / "EdgeFF"
    res = run_cli("export", int_path, "--format", "arduino", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    image, model = start_image(int_path, CONV_CONFIG), board_model(int_path)
    assert tflite_bytes_from_c_header(out / "src/board_model.h") == image and image[4] == m.LAYERED_MODEL_FORMAT
    capacities = {"image": (len(image) + 7) // 8 * 8, "scratch": (model.scratch_bytes + 7) // 8 * 8}
    ram = json.loads(res.stdout)["ram_bytes"]
    assert (ram["model image with master weights"], ram["working buffers and staging slots"]) == \
        (capacities["image"], capacities["scratch"])
    footprint = arduino_build.build_cortex_m(out, tmp_path / "build")
    assert {name: footprint["ram_symbols"][name] for name in capacities} == capacities
    assert footprint["ram_bytes"] + footprint["stack_bytes"] <= footprint["board_sram_bytes"]
    pixels = layered_stream(int_path, data, n=3).images
    runtime = IntLayeredModel.from_file(int_path)
    scores, one_pass = runtime.multi_pass_scores(pixels), runtime.head_logits(pixels).argmax(axis=1)
    with _sketch_link(_build_host(out, tmp_path / "host")) as link:
        assert link.info.model_loaded and (link.info.image_bytes, link.info.image_crc) == (len(image), crc32(image))
        assert link.read_image() == image
        for i, x in enumerate(pixels):
            assert link.infer(x) == (scores[i].argmax(), one_pass[i], scores[i].tolist())


def test_a_model_the_board_cannot_train_is_refused_before_writing(small_model, float_model, tmp_path):
    int_path, _ = small_model
    float_path, _ = float_model
    out = tmp_path / "lib"
    res = run_cli("export", float_path, "--format", "arduino", "--out", out)
    assert res.returncode != 0 and "int8 model" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not list(tmp_path.glob(".lib.partial-*"))
    (out / "keep").parent.mkdir()
    (out / "keep").write_text("mine")
    res = run_cli("export", int_path, "--format", "arduino", "--out", out)
    assert res.returncode != 0 and "files in it" in res.stderr + res.stdout
    assert (out / "keep").read_text() == "mine"
