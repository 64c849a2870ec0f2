"""The pipeline's on-device stage: on-device learning a user can see (firmware_bridge/scenarios.py,
new-classes): the host trains the board-sized network (models/board-784-64-32.toml; the default 784-500-500
needs 1.9 MiB to train, more than any microcontroller profile here) on 8 of the 10 classes and quantizes it;
a board learns the other two from a stream over the serial protocol, with a replay buffer of earlier
images. The board is the one at --board-port, else the EdgeFF firmware on QEMU's emulated Cortex-M4 when
qemu-system-arm and gcc-arm-none-eabi are installed, else a virtual board with the nRF52840's memory budget.
The stage pulls the trained model back, checks it bit-identical to the NumPy runtime's after the same
samples, reports the accuracy on old and new classes before, along and after, and checks that the board's
own inference agrees with the integer runtime on the pulled model.
"""
import json
import shutil
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from edgeff.package_data import MODELS_DIR
from edgeff.runtime.int_model import IntFFModel

BOARD_CONFIG = MODELS_DIR / "board-784-64-32.toml"
BOARD_PROFILE = "nrf52840"
CALIBRATION = 2000
HOST_EPOCHS = 5
INFER_CHECKS = 20


def _board(port, storage):
    """(a context manager with .url unless a port is given, the --port that reaches the same board, what the
    report calls it: None for a real board, which names itself)."""
    from firmware_bridge.emulator import EmulatedBoard
    from firmware_bridge.virtual_board import VirtualBoard

    if port:
        return nullcontext(), port, None
    if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
        return EmulatedBoard(), "qemu://", "the EdgeFF firmware on an emulated Cortex-M4 (QEMU mps2-an386)"
    return (VirtualBoard(storage, profile=BOARD_PROFILE), "virtual://",
            f"a virtual board with the {BOARD_PROFILE} profile (install qemu-system-arm and gcc-arm-none-eabi "
            "for the emulated Cortex-M4)")


def host_model(scenario, out_dir, epochs: int, quiet=False) -> Path:
    """Train the board-sized network on the scenario's host data and quantize it; returns the int8 file.
    Training resumes from out_dir's checkpoint, so a rerun only quantizes again."""
    from edgeff.quant.ptq import quantize
    from edgeff.train.config import load_config
    from edgeff.train.trainer import train

    out_dir = Path(out_dir)
    cfg = load_config(BOARD_CONFIG)
    cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
    metrics = train(cfg, scenario.host, out_dir / "host-float", quiet=quiet)
    int_path = out_dir / "host-int8.safetensors"
    calib = slice(0, min(CALIBRATION, len(scenario.host.train)))
    quantize(metrics["model_file"], int_path, scenario.host.train.images[calib], scenario.host.train.labels[calib],
             scenario.host.fingerprint)
    return int_path


def scenario_run_to(out_dir, scenario, open_link, samples: int, host_epochs: int, quiet=False,
                    host_dir=None) -> dict:
    """The whole scenario (firmware_bridge.scenarios: new_classes or drift) into out_dir: the host's model (in
    host_dir, default out_dir: runs that share the host's data can share it), the board's run (open_link()
    gives the BoardLink), the board's trained model, scenario.json and scenario.png. Returns the result with
    the paths written."""
    from edgeff.atomic_write import atomic_write_text
    from firmware_bridge.board_training import save_pulled_model
    from firmware_bridge.scenarios import plot_curve, run_scenario

    out_dir = Path(out_dir)
    int_path = host_model(scenario, host_dir or out_dir, host_epochs, quiet)
    with open_link() as link:
        result = run_scenario(scenario, int_path, link, samples, quiet=quiet)
    trained = save_pulled_model(result.pop("image"), out_dir / "board-trained-int8.safetensors", int_path,
                                {"config": vars(scenario.config), "on_board": {"scenario": scenario.name,
                                                                                "samples": result["samples"]}})
    result |= {"host_epochs": host_epochs, "host_model": str(int_path), "board_model": str(trained),
               "report": str(out_dir / "scenario.json"), "plot": str(out_dir / "scenario.png")}
    plot_curve(result, result["plot"])
    atomic_write_text(result["report"], json.dumps(result, indent=2) + "\n")
    return result


def run_on_device(out_dir, data, port=None, samples=6000, quiet=False) -> dict:
    from firmware_bridge.driver import BoardLink
    from firmware_bridge.scenarios import REPLAY, new_classes

    out_dir = Path(out_dir) / "on-device"
    board, board_port, description = _board(port, out_dir / "virtual-board-flash")
    with board:
        url = port or board.url
        scenario = new_classes(data, replay=min(REPLAY, len(data.train) // 2))   # a small dataset: half of it
        result = scenario_run_to(out_dir, scenario, lambda: BoardLink(url), samples, HOST_EPOCHS, quiet=quiet)
        model = IntFFModel.from_file(result["board_model"])
        images = data.test.images[:INFER_CHECKS]
        expected = model.multi_pass_scores(images)
        with BoardLink(url) as link:
            agree = sum(link.infer(image)[2] == expected[i].tolist() for i, image in enumerate(images))
            board_name = f"{link.info.name} ({link.info.firmware})"
    return {**result, "board": description or board_name, "port": board_port, "emulated": board_port == "qemu://",
            "inference_checked": len(images), "inference_agreeing": agree, "model_file": result["board_model"]}


def on_device_markdown(r: dict) -> str:
    compute = r["board_compute_us_per_sample"]
    # QEMU's -icount shift=0 runs one instruction per virtual nanosecond: its board time counts instructions
    compute = ("no board compute this time: the board already held the finished run" if compute is None else
               f"{compute / 1000:.2f} M instructions of board compute per sample" if r["emulated"] else
               f"{compute / 1000:.2f} ms of board compute per sample")
    rows = "\n".join(f"| {name} | {r['before'][name]:.4f} | {r['after'][name]:.4f} | "
                     f"{100 * (r['after'][name] - r['before'][name]):+.2f} points |" for name in r["before"])
    return f"""## On-device training ({r['board']})

Learning on the board what the host never saw: {r['what']}. The board-sized network (784-64-32) was trained on
the host for {r['host_epochs']} epochs and quantized to int8; the board then trained on {r['samples']:,}
samples at batch size 1 with the integer rule (learning rate 2^-{r['lr_shift']}, {r['negatives']} negatives),
{r['samples_per_s']:.0f} samples/s over the link ({compute}), {r['resumes']} resumes. The replay buffer would
take {r['replay_flash_bytes']:,} bytes of a board's flash; here the host sends it in the stream. Same with
`edgeff board scenario new-classes --port {r['port']} --samples {r['samples']} --host-epochs {r['host_epochs']}
--out on-device` (docs/on_device_learning.md).

| int8 model, test set (multi-pass) | before on-device training | after (pulled from the board) | change |
|---|---|---|---|
{rows}

![accuracy against samples seen on the board](on-device/scenario.png)

The model pulled from the board is {"bit-identical" if r['runtime_identical'] else "**not** identical"} to the
NumPy integer runtime's after the same samples (so the curve, computed by the runtime along the same stream,
is the board's), and the board's own multi-pass scores equal the runtime's on it for
{r['inference_agreeing']} of {r['inference_checked']} test images."""
