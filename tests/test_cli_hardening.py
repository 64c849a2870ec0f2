"""What a new user and a script meet at the command line: outputs checked before any work, bad values refused
with one line, one JSON document on stdout, progress and notices on stderr, help for every option."""
import fcntl
import itertools
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from edgeff.app.cli import build_parser
from edgeff.model_description import ModelDescription
from tests.conftest import run_cli, write_dataset


def _refused(res, message):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr, res.stderr


def test_file_outputs_are_checked_up_front(float_model, small_model, tmp_path):
    float_path, data = float_model
    int_path, small_data = small_model
    before = {p: p.read_bytes() for p in (float_path, int_path)}
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    cases = [
        (("export", float_path, "--format", "onnx", "--out", float_path), "is the input file"),
        (("quantize", float_path, "--out", float_path, "--data-dir", data), "is the input file"),
        (("quantize", float_path, "--out", float_path.parent / "model.safetensors/int8.safetensors",
          "--data-dir", data), "so nothing can be written under it"),
        (("finetune", int_path, "--out", folder, "--data-dir", small_data), "is a folder"),
        (("finetune", int_path, "--out", "/proc/edgeff/out.safetensors", "--data-dir", small_data),
         "cannot write in /proc"),
        (("board", "train", "--model", int_path, "--out", folder, "--data-dir", small_data,
          "--storage", tmp_path / "board"), "is a folder"),
        (("board", "pull", "--model", int_path, "--out", int_path, "--storage", tmp_path / "board"),
         "is the input file"),
    ]
    for args, message in cases:
        _refused(run_cli(*args), message)
    assert {p: p.read_bytes() for p in before} == before and [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "board").exists()   # refused before a virtual board was even started


def test_folder_outputs_are_checked_up_front(float_model, tiny_config, tmp_path):
    float_path, data = float_model
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    _refused(run_cli("train", tiny_config(), "--out", a_file, "--data-dir", data), "is a file, not a folder")
    _refused(run_cli("profile", float_path, "--board", "nrf52840", "--out", a_file), "is a file, not a folder")
    _refused(run_cli("pipeline", "--out", a_file / "report", "--data-dir", data),
             "so nothing can be written under it")
    assert a_file.read_text() == "mine"


def test_train_refuses_a_config_whose_input_width_does_not_match_the_data(tiny_config, tmp_path):
    from tests.conftest import write_dataset

    data = write_dataset(tmp_path / "small-images", n_train=200, n_test=50, side=12)   # 144 pixels
    out = tmp_path / "run"
    _refused(run_cli("train", tiny_config(), "--out", out, "--data-dir", data),
             "input width of 784, but the images in")
    assert not out.exists()


def test_board_train_refuses_a_model_whose_sizes_do_not_match_its_tensors(small_model, tmp_path):
    int_path, data = small_model
    raw = int_path.read_bytes()
    tensors = st_load(raw)
    header = json.loads(json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]["edgeff"])
    header["architecture"]["layers"][1]["out_features"] = 9   # sizes 144-16-9
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(st_save(tensors, metadata={"edgeff": json.dumps(header)}))
    _refused(run_cli("board", "train", "--model", bad, "--out", tmp_path / "out.safetensors", "--data-dir", data,
                     "--storage", tmp_path / "board", "--samples", "5"),
         "tensor 'layers.1.weight' is int8[8, 16], expected")


@pytest.mark.parametrize("config_text", ["", "name = 'x'\n[train]\nepochs = 1\n"], ids=["empty", "no-model"])
def test_a_config_without_a_network_shape_is_refused(tmp_path, float_model, config_text):
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_text)
    _refused(run_cli("train", cfg, "--out", tmp_path / "run", "--data-dir", float_model[1]),
             "[model] sizes is missing")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ("finetune", "m.safetensors", "--out", "o.safetensors", "--samples", "-5"),
    ("finetune", "m.safetensors", "--out", "o.safetensors", "--epochs", "0"),
    ("train", "c.toml", "--val-fraction", "1.5"),
    ("train", "c.toml", "--val-fraction", "nan"),
    ("quantize", "m.safetensors", "--out", "o.safetensors", "--calibration-percentile", "inf"),
    ("board", "train", "--model", "m", "--out", "o", "--checkpoint-every", "0"),
    ("pipeline", "--board-samples", "-1"),
], ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_out_of_range_values_are_refused_by_the_parser(args):
    res = run_cli(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: argument {args[-2]}: " in res.stderr.splitlines()[-1], res.stderr


def test_train_takes_the_validation_fraction_and_later_commands_use_the_recorded_split(tiny_config, tmp_path):
    data = write_dataset(tmp_path / "d", n_train=300, n_test=50)
    cfg = tmp_path / "frac.toml"
    cfg.write_text(tiny_config().read_text().replace("val_size = 100\n", ""))
    res = run_cli("train", cfg, "--out", tmp_path / "run", "--data-dir", data, "--val-fraction", "0.2", "--json")
    assert res.returncode == 0, res.stderr
    header = json.loads(json.loads(_st_header(tmp_path / "run/model.safetensors"))["__metadata__"]["edgeff"])
    assert header["data"]["val_size"] == 60 and header["training"]["config"]["train"]["val_fraction"] == 0.2
    res = run_cli("eval", tmp_path / "run/model.safetensors", "--split", "val", "--data-dir", data, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["n_samples"] == 60, res.stderr


def _st_header(path):
    raw = path.read_bytes()
    return raw[8:8 + int.from_bytes(raw[:8], "little")]


def test_json_stdout_is_one_document_and_progress_still_reaches_a_terminal(tiny_config, float_model, tmp_path):
    """Run twice (the second resumes: a notice) with stderr on a pseudo-terminal, as a person would see it."""
    data = float_model[1]
    for _ in range(2):
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a 100-column terminal
        proc = subprocess.Popen([sys.executable, "-m", "edgeff", "train", str(tiny_config()), "--out",
                                 str(tmp_path / "run"), "--data-dir", str(data), "--json"],
                                stdout=subprocess.PIPE, stderr=follower, text=True)
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:   # the child closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
        stdout = proc.communicate()[0]
        os.close(leader)
        assert proc.returncode == 0, terminal.decode(errors="replace")
        assert json.loads(stdout)["name"] == "tiny"          # nothing but the one document
        assert b"train tiny" in terminal or b"resuming tiny" in terminal
        # the steps after the training bar reaches 100 % say what they do
        assert b"choosing the multi-pass layers" in terminal and b"fit one-pass head" in terminal
    assert b"resuming tiny" in terminal


def test_board_virtual_json_prints_its_url_and_ctrl_c_says_what_it_stopped(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edgeff", "board", "virtual", "--json", "--storage",
                             str(tmp_path / "flash")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    announced = json.loads(proc.stdout.readline())
    assert announced["url"].startswith("socket://")
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate()
    assert rest == "" and "virtual board stopped" in stderr and "resume training" not in stderr


def test_every_option_has_help_and_its_default_is_shown():
    def parsers(parser, name="edgeff"):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, type(parser._subparsers._group_actions[0])) if parser._subparsers else False:
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {sub_name}")

    for name, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                assert action.help, f"{name} {action.option_strings[0]} has no help line"
                if action.default not in (None, False):
                    assert "default" in formatter._get_help_string(action), f"{name} {action.option_strings[0]}"


def test_board_emulate_help_lists_only_its_own_options():
    emulate = build_parser().parse_args(["board", "emulate"])
    assert {k for k in vars(emulate)} == {"command", "board_command", "func", "interrupted", "json", "listen",
                                          "model_header", "board"}


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("edgeff 0.")


def test_a_board_header_too_big_for_the_firmware_is_refused_at_export(small_model, tmp_path):
    import numpy as np

    from edgeff.model_file import load_model, save_model

    tensors, header = load_model(small_model[0])
    rng = np.random.default_rng(0)

    def sized(name, sizes):
        """small_model's file (two layers too) with random layers of these sizes"""
        layers = dict(tensors)
        for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
            layers[f"layers.{i}.weight"] = rng.integers(-127, 128, (d_out, d_in)).astype(np.int8)
            for field, dtype, value in (("bias", np.int32, 0), ("multiplier", np.int32, 1 << 30),
                                        ("shift", np.int32, -8)):
                layers[f"layers.{i}.{field}"] = np.full(d_out, value, dtype)
            layers[f"layers.{i}.weight_scale"] = np.ones(d_out, np.float32)
        layers["head.weight"] = np.zeros((10, sizes[-1]), np.int8)
        return save_model(tmp_path / name, layers,
                          {**header, "architecture": {**header["architecture"], "sizes": sizes, "head_layers": [2],
                                                      "layers": ModelDescription.dense(sizes).to_header()}})

    big = sized("big.safetensors", [144, 1024, 128])    # 278 KB of int8 weights, and twice that of master weights
    out = tmp_path / "board_model.h"
    _refused(run_cli("export", big, "--format", "board-header", "--out", out), "board RAM, but EdgeFF's board "
             "firmware on mps2-an386 holds models up to 196,608 bytes")
    assert not out.exists()
    res = run_cli("export", small_model[0], "--format", "board-header", "--out", out)
    assert res.returncode == 0 and out.exists() and "edgeff verify" not in res.stdout, res.stdout
    # 144-256-64 takes about 160 KB with its master weights: the mps2-an386's 192 KB hold it, the netduinoplus2's
    # 96 KB do not
    mid = sized("mid.safetensors", [144, 256, 64])
    res = run_cli("export", mid, "--format", "board-header", "--out", tmp_path / "mid.h")
    assert res.returncode == 0, res.stderr
    _refused(run_cli("export", mid, "--format", "board-header", "--board", "netduinoplus2", "--out",
                     tmp_path / "f4.h"), "firmware on netduinoplus2 holds models up to 98,304 bytes")
    # 40x40 inputs: on the netduinoplus2 the image (77 KB) fits, the four staging slots and the passes' buffers
    # (13,700 bytes) do not fit its 8 KB scratch (the mps2-an386's 40 KB, sized for conv models, hold them)
    wide = sized("wide.safetensors", [1600, 16, 8])
    _refused(run_cli("export", wide, "--format", "board-header", "--board", "netduinoplus2", "--out",
                     tmp_path / "wide.h"),
             "training it takes 13,700 bytes of working buffers and staging slots, but EdgeFF's board firmware on "
             "netduinoplus2 has 8,192")


# README's example and the two walkthroughs in docs/, each read on its own from a fresh clone, with the fewest
# commands each holds (so a change that hides their commands from this parser fails instead of passing empty)
WALKTHROUGHS = [("README.md", 8), ("docs/cli.md", 15), ("docs/board.md", 8)]


@pytest.mark.parametrize("document, fewest", WALKTHROUGHS)
def test_each_walkthrough_uses_only_files_an_earlier_command_made(document, fewest):
    """Top to bottom, as a new user runs it from a fresh clone: every model, export or header a command reads
    was written by a command above it, and `verify` is only given exports it runs (not a board-header)."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / document).read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(".venv/bin/edgeff "):
                commands.append(shlex.split(line.split("  #")[0])[1:])
    made, formats, file_like = set(), {}, re.compile(r"\.(safetensors|onnx|tflite|h|nir)$")
    for words in commands:
        if words[0] == "train":
            out = words[words.index("--out") + 1] if "--out" in words else f"runs/{words[1]}"
            made.add(f"{out}/model.safetensors")
            continue
        options = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
        values = set(options.values())
        inputs = [w for w in words[1:] if (file_like.search(w) or w.isupper()) and w not in values]
        inputs += [options[o] for o in ("--model", "--model-header") if o in options]
        for path in inputs:
            assert path in made, f"{document}: `edgeff {' '.join(words)}` reads {path}, which no earlier command writes"
        if words[0] == "verify":
            assert formats.get(words[2]) in ("onnx", "tflite", "c-header", "nir"), f"verify runs exports: {words}"
        if "--out" in options:
            made.add(options["--out"])
            formats[options["--out"]] = options.get("--format")
    assert len(commands) >= fewest, f"{document}: {len(commands)} edgeff commands found, expected {fewest} or more"


def test_board_train_says_when_it_loads_and_pulls_the_model(small_model, tmp_path):
    int_path, data = small_model
    res = run_cli("board", "train", "--model", int_path, "--out", tmp_path / "o.safetensors", "--samples", "5",
                  "--data-dir", data, "--storage", tmp_path / "flash")
    assert res.returncode == 0, res.stderr
    assert "loading the model and starting at sample 0" in res.stderr and "pulling the model" in res.stderr
    assert "loading" not in res.stdout and res.stdout.startswith("trained 5 samples")
