"""The pipeline's on-device stage: a board-sized network trained on a board over the serial protocol.

The default model (784-500-500) needs 1.9 MiB to train, more than any microcontroller profile here, so
this stage trains the board-sized network (models/board-784-64-32.toml) on the host, quantizes it, and
streams training samples to a board: the one at --board-port, else the EdgeFF firmware on QEMU's
emulated Cortex-M4 when qemu-system-arm and gcc-arm-none-eabi are installed, else a virtual board with the
nRF52840's memory budget. It pulls the trained model back, checks that it is bit-identical to the NumPy
runtime's after the same samples, evaluates it before and after, and checks that the board's own
inference agrees with the integer runtime on the pulled model.
"""
import shutil
from contextlib import nullcontext
from pathlib import Path

from edgeff.package_data import MODELS_DIR
from edgeff.quant.ptq import quantize
from edgeff.runtime.int_model import IntFFModel, evaluate_int
from edgeff.runtime.int_training import IntTrainingConfig
from edgeff.train.config import load_config
from edgeff.train.trainer import train

BOARD_CONFIG = MODELS_DIR / "board-784-64-32.toml"
BOARD_PROFILE = "nrf52840"
LEARNING_RATE_SHIFT = 20        # from-PTQ schedule of benchmarks/runtime_accuracy.py
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


def run_on_device(out_dir, data, port=None, samples=4000, quiet=False) -> dict:
    from firmware_bridge.board_training import SampleStream, runtime_image, save_pulled_model, train_on_board
    from firmware_bridge.driver import BoardLink

    out_dir = Path(out_dir) / "on-device"
    cfg = load_config(BOARD_CONFIG)
    metrics = train(cfg, data, out_dir / "float", quiet=quiet)
    ptq = out_dir / "board-int8.safetensors"
    calib = slice(0, min(2000, len(data.train)))
    quantize(metrics["model_file"], ptq, data.train.images[calib], data.train.labels[calib], data.fingerprint)
    before_model = IntFFModel.from_file(ptq)
    before = evaluate_int(before_model, data.test.images, data.test.labels, before_model.eval_layers)
    stream = SampleStream(data.train.images, data.train.labels, min(samples, len(data.train)))
    config = IntTrainingConfig(lr_shift=LEARNING_RATE_SHIFT)
    board, board_port, description = _board(port, out_dir / "virtual-board-flash")
    with board:
        with BoardLink(port or board.url) as link:
            result = train_on_board(link, ptq, stream, config, checkpoint_every=2000, quiet=quiet)
            pulled = result.pop("image")
            trained = save_pulled_model(pulled, out_dir / "board-trained-int8.safetensors", ptq,
                                        {"config": vars(config), "on_board": {"samples": len(stream)}})
            model = IntFFModel.from_file(trained)
            images = data.test.images[:INFER_CHECKS]
            expected = model.multi_pass_scores(images)
            agree = sum(link.infer(image)[2] == expected[i].tolist() for i, image in enumerate(images))
            board_name = f"{link.info.name} ({link.info.firmware})"
    after = evaluate_int(model, data.test.images, data.test.labels, model.eval_layers)
    return {"board": description or board_name, "port": board_port, "emulated": board_port == "qemu://",
            "runtime_identical": pulled == runtime_image(ptq, stream, config),
            "int8_before": before, "int8_after": after,
            "samples": len(stream), "lr_shift": LEARNING_RATE_SHIFT, "inference_checked": len(images),
            "inference_agreeing": agree, "model_file": str(trained),
            **{k: result[k] for k in ("samples_per_s", "board_compute_us_per_sample", "seconds_by_phase",
                                      "recent_goodness_accuracy", "resumes")}}


def on_device_markdown(r: dict) -> str:
    b, a = r["int8_before"], r["int8_after"]
    compute = (r["board_compute_us_per_sample"] or 0) / 1000
    # QEMU's -icount shift=0 runs one instruction per virtual nanosecond: its board time counts instructions
    compute = ("no board compute this time: the board already held the finished run"
               if r["board_compute_us_per_sample"] is None else
               f"{compute:.2f} M instructions of board compute per sample" if r["emulated"] else
               f"{compute:.2f} ms of board compute per sample")
    return f"""## On-device training ({r['board']})

The board-sized network (784-64-32, `models/board-784-64-32.toml`) quantized to int8, then trained on the
board over the serial protocol with the integer rule: {r['samples']:,} samples at batch size 1, learning
rate 2^-{r['lr_shift']}, {r['samples_per_s']:.0f} samples/s over the link ({compute}), {r['resumes']}
resumes. Same with `edgeff board train --port {r['port']} --model
on-device/board-int8.safetensors --out trained.safetensors --samples {r['samples']} --lr-shift {r['lr_shift']}`.

| int8 model, test set | multi-pass | one-pass |
|---|---|---|
| after PTQ, before on-device training | {b['multi_pass']:.4f} | {b['one_pass']:.4f} |
| after on-device training (pulled from the board) | {a['multi_pass']:.4f} | {a['one_pass']:.4f} |

The model pulled from the board is {"bit-identical" if r['runtime_identical'] else "**not** identical"} to the
NumPy integer runtime's after the same samples, and the board's own multi-pass scores equal the runtime's
on it for {r['inference_agreeing']} of {r['inference_checked']} test images."""
