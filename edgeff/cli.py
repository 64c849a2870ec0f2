"""The `edgeff` command: one subcommand per stage of the flow (see README.md).

Every command that reports numbers takes --json and then prints exactly one JSON document on stdout;
progress bars go to stderr. User errors exit with status 2 and a one-line message, never a traceback.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from edgeff import __version__
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_PIPELINE_CONFIG = "acff-784-500-500-fast"


def resolve_config(name_or_path: str) -> Path:
    """A config path, or the name of one in models/ (with or without .toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (MODELS_DIR / name_or_path, MODELS_DIR / f"{name_or_path}.toml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.toml"))) or "none found"
    raise EdgeFFError(f"no config file '{name_or_path}'; give a path or one of the names in "
                      f"{MODELS_DIR}: {known}")


def _int_list(text: str) -> list:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise EdgeFFError(f"--layers {text!r}: give comma-separated layer numbers such as 1,2") from None


def at_least(low: int):
    """An argparse type: an integer of at least `low` (argparse then names the option and exits 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {low} or more")
        return value
    return parse


def between(low: float, high: float, open_interval=False):
    """An argparse type: a finite number in [low, high], or in (low, high) with open_interval."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = low < value < high if open_interval else low <= value <= high
        if not inside:   # also refuses nan, which compares false
            raise argparse.ArgumentTypeError(f"{text} must lie between {low} and {high}"
                                             + (" (both excluded)" if open_interval else ""))
        return value
    return parse


def progress_off(args) -> bool:
    """Progress bars go to stderr: off with --quiet, and with --json unless stderr is a terminal (a person
    watching), so a script capturing both streams gets its JSON and no bar noise."""
    return getattr(args, "quiet", False) or (args.json and not sys.stderr.isatty())


def print_result(args, payload: dict, text: str):
    print(json.dumps(payload, indent=2) if args.json else text)


def cmd_train(args):
    from edgeff.data.datasets import load_dataset
    from edgeff.train.config import load_config
    from edgeff.train.trainer import train

    cfg = load_config(resolve_config(args.config))
    out = check_out_path(args.out or Path("runs") / cfg.name, directory=True)
    for key in ("seed", "epochs"):
        if getattr(args, key) is not None:
            setattr(cfg.train, key, getattr(args, key))
    if args.val_fraction is not None:
        cfg.train.val_fraction, cfg.train.val_size = args.val_fraction, 0
    data = load_dataset(args.data_dir, val_size=cfg.train.val_size, val_fraction=cfg.train.val_fraction)
    metrics = train(cfg, data, out, fresh=args.fresh, quiet=progress_off(args))
    val = metrics["val"]
    print_result(args, {k: v for k, v in metrics.items() if k != "history"},
           f"{cfg.name}: {metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s; validation "
           f"multi-pass {val['multi_pass']:.4f}, one-pass {val['one_pass']:.4f}\n"
           f"model: {metrics['model_file']}\nplots: {', '.join(metrics['plots'])}")


def _dataset_of(header, data_dir):
    """The dataset a model was trained on, split the same way."""
    from edgeff.data.datasets import load_dataset

    split = header.get("data") or {}
    # the split recorded in the model file (a count), so every later stage validates on the same images
    data = load_dataset(data_dir, val_size=split.get("val_size"), split_seed=split.get("split_seed", 0))
    width = (header.get("architecture") or {}).get("sizes", [data.train.images.shape[1]])[0]
    if data.train.images.shape[1] != width:
        raise EdgeFFError(f"the model expects {width} input pixels, but {data.directory} has images of "
                          f"{data.train.images.shape[1]} pixels")
    return data


def cmd_eval(args):
    from edgeff.model_file import load_model
    from edgeff.train.config import layer_list

    _, header = load_model(args.model)
    arch = header.get("architecture") or {}
    split = getattr(_dataset_of(header, args.data_dir), args.split)
    layers = arch.get("eval_layers")
    if args.layers:
        layers = layer_list("--layers", "layers", _int_list(args.layers), len(arch["sizes"]) - 1)
    if arch.get("kind") == ModelKind.INT8:
        from edgeff.runtime.int_model import IntFFModel, evaluate_int

        scores = evaluate_int(IntFFModel.from_file(args.model), split.images, split.labels, layers, args.mode)
        arithmetic = "int8 (integer runtime)"
    else:
        from edgeff.train.evaluate import evaluate
        from edgeff.train.model_io import load_network

        scores = evaluate(load_network(args.model)[0], split.images, split.labels, layers, args.mode)
        arithmetic = "float32 (torch)"
    result = {"model": str(args.model), "split": args.split, "arithmetic": arithmetic, **scores}
    lines = [f"{args.model} on {args.split} ({result['n_samples']} samples), {arithmetic}:"]
    if "multi_pass" in result:
        lines.append(f"  multi-pass accuracy {result['multi_pass']:.4f} (goodness of layers {layers})")
        lines += [f"    layer {i + 1} alone {a:.4f}" for i, a in enumerate(result["per_layer"])]
    if "one_pass" in result:
        lines.append(f"  one-pass accuracy   {result['one_pass']:.4f} (softmax head)")
    print_result(args, result, "\n".join(lines))


def cmd_quantize(args):
    from edgeff.model_file import load_model
    from edgeff.quant.ptq import quantize

    check_out_path(args.out, inputs=[args.model])
    _, header = load_model(args.model)
    data = _dataset_of(header, args.data_dir)
    n = args.calibration_samples or min(2000, len(data.train))
    if n > len(data.train):
        raise EdgeFFError(f"--calibration-samples must be between 1 and {len(data.train)}")
    written = quantize(args.model, args.out, data.train.images[:n], data.train.labels[:n], data.fingerprint,
                       args.from_scratch, percentile=args.calibration_percentile, norm_bits=args.norm_bits,
                       rounding=args.rounding)
    scales = ", ".join(f"{layer['out_scale']:.4g}" for layer in written["quantization"]["layers"])
    print_result(args, {"model": str(args.out), **written["quantization"]},
           f"wrote {args.out}: int8 weights (per channel), activation scales "
           f"{scales}; check it with `edgeff eval {args.out}`")


def cmd_export(args):
    from edgeff.export.write import export_model

    check_out_path(args.out, inputs=[args.model])
    written = export_model(args.model, args.format, args.out, args.layer_op)
    tflm = (f"\nTensorFlow Lite Micro: arena {written['tflm_arena_bytes']:,} bytes (measured by its interpreter), "
            f"ops {', '.join(written['tflm_ops'])} (docs/tflm.md shows the C++ that runs it)"
            if "tflm_arena_bytes" in written else "")
    next_step = (f"run it with `edgeff board emulate --model-header {written['out']}`" if args.format == "board-header"
                 else f"check it with `edgeff verify {args.model} {written['out']}`")
    print_result(args, written, f"wrote {written['out']}: {written['what']}, {written['bytes']:,} bytes; "
                                f"{next_step}{tflm}")


def cmd_verify(args):
    from edgeff.export.verify import parity_table, verdict_line, verify
    from edgeff.model_file import load_model

    _, header = load_model(args.model)
    data = _dataset_of(header, args.data_dir)
    n = args.images or len(data.test)
    if n > len(data.test):
        raise EdgeFFError(f"--images must be between 1 and {len(data.test)}")
    result = verify(args.model, args.exported, data.test.images[:n], data.test.labels[:n],
                    progress=not progress_off(args))
    print_result(args, result, parity_table(result))
    if args.json:   # the table ends with the verdict; a script reading JSON still sees it on stderr
        print(verdict_line(result), file=sys.stderr)
    return 1 if result["verdict"] == "fail" else 0


def cmd_finetune(args):
    import numpy as np
    from tqdm import tqdm

    from edgeff.model_file import load_model, save_model
    from edgeff.runtime.int_model import evaluate_int
    from edgeff.runtime.int_training import load_trainer, trainer_tensors

    check_out_path(args.out, inputs=[args.model])
    _, header = load_model(args.model)
    if (header.get("architecture") or {}).get("kind") != ModelKind.INT8:
        raise EdgeFFError(f"{args.model}: finetune continues training an int8 model; make one with "
                          "`edgeff quantize MODEL --out MODEL_INT8`")
    data = _dataset_of(header, args.data_dir)
    trainer = load_trainer(args.model, _training_config(args))
    n = min(args.samples or len(data.train), len(data.train))
    layers = header["architecture"]["eval_layers"]
    history = []
    bar = tqdm(total=args.epochs * n, unit="sample", desc="finetune int8", disable=progress_off(args))
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(data.train))[:n]
        correct = 0
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            correct += trainer.step(data.train.images[idx], data.train.labels[idx])["correct"]
            bar.update(len(idx))
        val = evaluate_int(trainer.model, data.val.images, data.val.labels, layers, "multi")
        history.append({"epoch": epoch + 1, "samples": (epoch + 1) * n, "steps_total": trainer.step_count,
                        "train_pos_above_neg": correct / n, "val_multi_pass": val["multi_pass"],
                        "gamma_q": trainer.gamma_q.tolist()})
        bar.set_postfix(val=f"{val['multi_pass']:.4f}")
        save_model(args.out, trainer_tensors(trainer),
                   {**header, "int_training": {"config": vars(trainer.config), "step": trainer.step_count,
                                               "history": history, "source_model": str(args.model)}})
    bar.close()
    print_result(args, {"model": str(args.out), "history": history},
           "\n".join(f"epoch {h['epoch']}: validation multi-pass {h['val_multi_pass']:.4f}" for h in history)
           + f"\nwrote {args.out}")


def _training_config(args):
    from edgeff.runtime.int_training import IntTrainingConfig

    return IntTrainingConfig(lr_shift=args.lr_shift, gamma_shift=args.gamma_shift, loss=args.loss,
                             negatives=args.negatives, rounding=args.rounding, seed=args.seed)


def cmd_memory_plan(args):
    from edgeff.profiler.profile_report import model_architecture
    from edgeff.runtime.memory_plan import plan_summary, training_plan

    arch = model_architecture(args.model)
    summary = plan_summary(training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"], arch["norm_bits"]))
    lines = [f"{'buffer':42s} {'region':6s} {'dtype':6s} {'shape':>12s} {'bytes':>9s}"]
    lines += [f"{b['name']:42s} {b['region']:6s} {b['dtype']:6s} {tuple(b['shape'])!s:>12s} {b['bytes']:9d}"
              for b in summary["buffers"]]
    lines.append(f"SRAM {summary['sram_bytes']} bytes, flash {summary['flash_bytes']} bytes "
                 "(integer training, batch size 1)")
    print_result(args, summary, "\n".join(lines))


def cmd_profile(args):
    from edgeff.profiler.profile_report import format_table, profile_model

    check_out_path(args.out, directory=True)
    result = profile_model(args.model, args.board, args.batch, args.measure, args.out)
    print_result(args, result, format_table(result))


def cmd_board(args):
    from firmware_bridge import commands

    if args.board_command == "train":
        return commands.cmd_train(args, _training_config(args), _dataset_of)
    return getattr(commands, f"cmd_{args.board_command}")(args)


def cmd_pipeline(args):
    from edgeff.report.pipeline import run_pipeline

    check_out_path(args.out, directory=True)
    result = run_pipeline(resolve_config(args.config), args.out, args.data_dir, fresh=args.fresh,
                          quiet=progress_off(args), board_port=args.board_port, board_samples=args.board_samples,
                          val_fraction=args.val_fraction)
    print_result(args, result, f"report: {result['report']}")


# what Ctrl-C leaves behind, per command (files are written atomically: none is ever half-written)
NOTHING_WRITTEN = "interrupted; nothing was written"
TRAINING_RESUMES = ("interrupted; the checkpoint of the last finished epoch stays in the output folder: run the "
                    "same command again to resume training from it")


def _board_train_interrupted(args) -> str:
    if args.port == "emulate":
        return ("interrupted; the emulated board's checkpoints lived in QEMU's memory and are gone with it: running "
                "the same command again starts from sample 0 (to keep a board between runs, start one with "
                "`edgeff board emulate` and pass its URL to --port)")
    return ("interrupted; the board keeps its last checkpoint (taken every --checkpoint-every samples) if it has "
            "storage: running the same command again goes on from there")


class HelpWithDefaults(argparse.HelpFormatter):
    """Shows each option's default where its help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeff", formatter_class=HelpWithDefaults,
        description="EdgeFF: train Forward-Forward networks on a host and take them to microcontrollers.",
        epilog="Start with `edgeff pipeline`; `edgeff COMMAND --help` explains each command.")
    p.add_argument("--version", action="version", version=f"edgeff {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, func, interrupted=NOTHING_WRITTEN):
        sp = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpWithDefaults)
        sp.set_defaults(func=func, interrupted=interrupted)
        return sp

    def val_fraction(p):
        p.add_argument("--val-fraction", type=between(0, 1, open_interval=True), metavar="F",
                       help="override [train] val_fraction: the part of the training images held out for "
                            "validation (default: the config's, else 1/6)")

    def data_dir(sp):
        sp.add_argument("--data-dir", help="MNIST-format IDX directory (default: $EDGEFF_DATA_DIR, then "
                                           "/usr/share/datasets/fashion-mnist)")

    def training_options(sp):
        sp.add_argument("--lr-shift", type=int, default=22, help="learning rate 2^-N (default: %(default)s)")
        sp.add_argument("--gamma-shift", type=int, default=36, help="A-CFF gamma learning rate 2^-N")
        sp.add_argument("--loss", choices=["symba", "softplus"], default="symba",
                        help="FF loss of the integer rule: SymBa's or the theta-softplus")
        sp.add_argument("--negatives", choices=["random", "hard"], default="random",
                        help="how negative labels are drawn: uniformly random wrong, or the model's hardest")
        sp.add_argument("--rounding", choices=["stochastic", "nearest"], default="stochastic",
                        help="how weight updates are rounded to the master weights' integers")
        sp.add_argument("--seed", type=int, default=0, help="seeds the sample order and stochastic rounding")

    def json_flag(sp):
        sp.add_argument("--json", action="store_true", help="print one machine-readable JSON document")

    sp = add("train", "Train an FF / F-CFF / A-CFF network from a TOML config (resumes from its "
                      "last checkpoint if one is in --out).", cmd_train, interrupted=TRAINING_RESUMES)
    sp.add_argument("config", help="config file, or a name from models/ such as ff-784-500-500-fast")
    sp.add_argument("--out", help="output directory (default: runs/<config name>)")
    sp.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    sp.add_argument("--seed", type=at_least(0), help="override [train] seed")
    sp.add_argument("--epochs", type=at_least(1), help="override [train] epochs (per layer for the paper protocol)")
    val_fraction(sp)
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    data_dir(sp)
    json_flag(sp)

    sp = add("eval", "Report the accuracy of a model file, multi-pass and/or one-pass; float models run "
                     "in torch, int8 models in the integer runtime.", cmd_eval)
    sp.add_argument("model", help="model file written by `edgeff train` or `edgeff quantize`")
    sp.add_argument("--split", choices=["test", "val", "train"], default="test",
                    help="which split to score (val and train are split as recorded in the model file)")
    sp.add_argument("--mode", choices=["multi", "one", "both"], default="both",
                    help="multi-pass (goodness per label), one-pass (softmax head) or both")
    sp.add_argument("--layers", help="comma-separated layers to sum in multi-pass, e.g. 1,2 "
                                     "(default: the layers chosen at training)")
    data_dir(sp)
    json_flag(sp)

    sp = add("quantize", "Post-training quantization: float model file -> int8 model file for the integer "
                         "runtime and boards (per-channel int8 weights, calibrated activation scales).",
             cmd_quantize)
    sp.add_argument("model", help="float model file written by `edgeff train`")
    sp.add_argument("--out", required=True, help="int8 model file to write")
    sp.add_argument("--calibration-samples", type=at_least(1),
                    help="training samples used to calibrate activation ranges (default: 2000, or all "
                         "when there are fewer)")
    sp.add_argument("--calibration-percentile", type=between(50, 100), default=100.0, metavar="P",
                    help="activation range: this percentile of the calibration activities (default 100: "
                         "the largest; 99.999 trades rare clipping for finer steps)")
    sp.add_argument("--rounding", choices=["double", "single"], default="double",
                    help="requantization rounding: double (TFLite Micro's default, and the board's) or single "
                         "(TFLITE_SINGLE_ROUNDING, a build option of TFLite Micro and CMSIS-NN)")
    sp.add_argument("--norm-bits", type=int, choices=[7, 15], default=7,
                    help="normalized activations: 7 = int8, TFLite's L2_NORMALIZATION (default); 15 = int16 "
                         "with 16x8 FullyConnected, for models int8 normalization costs accuracy")
    sp.add_argument("--from-scratch", type=int, metavar="SEED",
                    help="keep only the number formats of MODEL; start the weights from a fresh random "
                         "init (seeded), for integer training from scratch")
    data_dir(sp)
    json_flag(sp)

    sp = add("export", "Export a model file for another runtime: ONNX (float or int8 integer ops), TFLite int8, a "
                       "C header of the TFLite model for firmware (c-header), or a C header of the board image "
                       "that EdgeFF's board firmware compiles in (board-header, array `board_model`).", cmd_export)
    sp.add_argument("model", help="model file (float from `edgeff train`, int8 from `edgeff quantize`/`finetune`)")
    sp.add_argument("--format", required=True, choices=["onnx", "tflite", "c-header", "board-header"],
                    help="what to write (see above)")
    sp.add_argument("--out", required=True, help="file to write")
    sp.add_argument("--layer-op", choices=["fully_connected", "conv_2d"], default="fully_connected",
                    help="TFLite op for each layer: FULLY_CONNECTED (default; what TFLite Micro runs) or the "
                         "equivalent 1x1 CONV_2D, which LiteRT's reference kernels requantize exactly as TFLM")
    json_flag(sp)

    sp = add("verify", "Run an exported .onnx, .tflite or c-header .h file in its own runtime on the test split "
                       "(onnxruntime; TensorFlow Lite Micro and LiteRT) and compare it with EdgeFF: a parity table "
                       "of differences, agreeing predictions and accuracy, and a verdict. Exit status 1 when a "
                       "runtime misses its policy (bit-exact, or the stated tolerance of runtimes that round "
                       "differently).", cmd_verify)
    sp.add_argument("model", help="the model file that was exported")
    sp.add_argument("exported", help="the exported .onnx, .tflite or c-header .h file")
    sp.add_argument("--images", type=at_least(1), help="test images to run (default: all)")
    data_dir(sp)
    json_flag(sp)

    sp = add("finetune", "Continue training an int8 model with the integer-only FF rule, exactly as a "
                         "board would (batch size 1 is the board's rule).", cmd_finetune,
             interrupted="interrupted; --out holds the model after the last finished epoch, if one finished "
                         "(finetune does not resume: the same command starts again from MODEL)")
    sp.add_argument("model", help="int8 model file (from `edgeff quantize` or an earlier finetune)")
    sp.add_argument("--out", required=True, help="int8 model file to write (with master weights)")
    sp.add_argument("--epochs", type=at_least(1), default=1, help="passes over the samples")
    sp.add_argument("--samples", type=at_least(1), help="training samples per epoch (default: all)")
    sp.add_argument("--batch-size", type=at_least(1), default=1, help="samples per update (default: 1, as a board)")
    training_options(sp)
    data_dir(sp)
    json_flag(sp)

    sp = add("memory-plan", "Every buffer of on-device integer training with its exact size.", cmd_memory_plan)
    sp.add_argument("model", help="float or int8 model file")
    json_flag(sp)

    sp = add("profile", "Memory and energy per layer of training and inference on a board, Forward-Forward "
                        "against backprop; a table (or --json) and PNG plots.", cmd_profile)
    sp.add_argument("model", help="float or int8 model file")
    sp.add_argument("--board", required=True, help="a name from hw_profiles/ (e.g. nrf52840) or a .toml path")
    sp.add_argument("--batch", type=at_least(1), default=1, help="training batch size (default: 1, as a board)")
    sp.add_argument("--measure", action="store_true",
                    help="also measure host training peaks (torch float32; NumPy int8 for int8 models)")
    sp.add_argument("--out", default="reports/profile", help="folder for the PNG plots (default: %(default)s)")
    json_flag(sp)

    sp = add("board", "Talk to a board over serial: info, on-device training, pulling the model back; or run "
                      "a virtual board.", cmd_board)
    board = sp.add_subparsers(dest="board_command", required=True, metavar="BOARD_COMMAND")

    def board_sub(name, help_text, link=True, virtual=True, interrupted=NOTHING_WRITTEN):
        bp = board.add_parser(name, help=help_text, description=help_text, formatter_class=HelpWithDefaults)
        bp.set_defaults(interrupted=interrupted)
        if virtual:   # what a virtual board (started by --port virtual, or `board virtual`) is made of
            bp.add_argument("--profile", default="nrf52840",
                            help="hardware profile (memory budget) of a virtual board (default: %(default)s)")
            bp.add_argument("--storage", default="runs/virtual-board",
                            help="a virtual board's flash: where its checkpoint lives (default: %(default)s)")
            bp.add_argument("--baud", type=at_least(1), help="emulate (virtual board) or expect this baud rate; "
                                                             "default: unthrottled virtual board, 115200 for timeouts")
            bp.add_argument("--max-payload", type=at_least(1),
                            help="largest frame payload in bytes (default: the board's)")
        if link:
            bp.add_argument("--port", default="virtual",
                            help="pyserial URL or device: /dev/ttyACM0, socket://HOST:PORT; `virtual` "
                                 "(default) starts a virtual board for this command, `emulate` the board "
                                 "firmware on QEMU's Cortex-M4")
            bp.add_argument("--timeout", type=float, default=0.5,
                            help="seconds to wait for a request type's first reply before resending; later "
                                 "waits follow the round trips measured (default: %(default)s)")
        json_flag(bp)
        return bp

    board_sub("info", "What the board is, its memory, the model and run it holds, its counters.")
    bp = board_sub("train", "Stream training samples to the board, which trains with the integer rule; "
                            "resumes a run the board holds; pulls the trained model into --out.",
                   interrupted=_board_train_interrupted)
    bp.add_argument("--model", required=True, help="int8 model file to load onto the board")
    bp.add_argument("--out", required=True, help="int8 model file to write with the board's trained weights")
    bp.add_argument("--samples", type=at_least(1), help="training samples per epoch (default: all)")
    bp.add_argument("--epochs", type=at_least(1), default=1, help="passes over the samples")
    bp.add_argument("--host-negatives", action="store_true",
                    help="send a random wrong label with each sample (default: the board draws negatives)")
    bp.add_argument("--checkpoint-every", type=at_least(1), default=1000,
                    help="samples between board checkpoints (default: %(default)s)")
    training_options(bp)
    data_dir(bp)
    bp = board_sub("pull", "Read the board's current model (weights, master weights, step) into a model file.")
    bp.add_argument("--out", required=True, help="int8 model file to write")
    bp.add_argument("--model", help="the model file the board was loaded from: its header (data split, scales, "
                                    "history) is carried over")
    bp = board_sub("virtual", "Run a virtual board (the integer runtime behind the serial protocol) until "
                              "killed; prints the URL to open.", link=False,
                   interrupted="virtual board stopped; its flash (the last checkpoint) stays in --storage")
    bp.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT of its socket (default: %(default)s, a "
                                                            "free port)")
    bp.add_argument("--pty", action="store_true", help="speak over a pseudo-terminal instead of a socket")
    bp.add_argument("--faults", default="", help="line faults to emulate, e.g. corrupt=0.01,drop=0.02,"
                                                 "duplicate=0.02,seed=1")

    bp = board_sub("emulate", "Build the board firmware if needed and run it on QEMU's Cortex-M4 (mps2-an386) "
                              "until killed; prints the pyserial URL of its UART.", link=False, virtual=False)
    bp.add_argument("--listen", type=int, help="TCP port of its UART on 127.0.0.1 (default: a free one)")
    bp.add_argument("--model-header", help="compile this model in (`edgeff export MODEL_INT8 --format board-header`): "
                                           "the board starts with it loaded")

    sp = add("pipeline", "The main job: train the default collaborative model, evaluate it on the test "
                         "set and write a report folder (Markdown, PNG plots, model file).", cmd_pipeline,
             interrupted=TRAINING_RESUMES)
    sp.add_argument("--config", default=DEFAULT_PIPELINE_CONFIG, help="model config (default: %(default)s)")
    sp.add_argument("--out", default="reports/pipeline", help="report folder (default: %(default)s)")
    sp.add_argument("--fresh", action="store_true", help="retrain even if a checkpoint exists")
    val_fraction(sp)
    sp.add_argument("--board-port", help="train the board-sized network on the board at this pyserial URL "
                                         "(default: the firmware on QEMU's Cortex-M4 when qemu-system-arm is "
                                         "installed, else a virtual board with the nRF52840's memory)")
    sp.add_argument("--board-samples", type=at_least(0), default=4000,
                    help="samples of on-device training (default: %(default)s; 0 skips the stage)")
    data_dir(sp)
    json_flag(sp)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except EdgeFFError as exc:
        print(f"edgeff: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgeff eval ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes stdout at exit)
        return 0
    except KeyboardInterrupt:
        note = args.interrupted(args) if callable(args.interrupted) else args.interrupted
        print(f"edgeff: {note}", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
