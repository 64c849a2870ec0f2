"""`edgeff export`: a model file for another runtime (ONNX, TFLite int8, C headers, NIR for neuromorphic chips)
or for EdgeFF's board firmware (board-header, written by the board link)."""
from edgeff.app.options import add_command, at_least, between, data_dir_option, dataset_of, json_flag, print_result
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError


def register(sub):
    sp = add_command(sub, "export", "Export a model file for another runtime: ONNX (float or int8 integer ops), "
                                    "TFLite int8 (MLPs and conv models), a C header of the TFLite model for "
                                    "firmware (c-header), or a C header of the board image that EdgeFF's board "
                                    "firmware compiles in "
                                    "(board-header, array `board_model`), an Arduino and PlatformIO library that "
                                    "trains the model on a real board over its serial port (arduino: --out is a "
                                    "folder; docs/arduino.md), or a NIR graph of rate-coded "
                                    "integrate-and-fire neurons for neuromorphic chips (nir, float dense models; "
                                    "docs/nir.md).", run)
    sp.add_argument("model", help="model file (float from `edgeff train`, int8 from `edgeff quantize`/`finetune`)")
    sp.add_argument("--format", required=True, choices=["onnx", "tflite", "c-header", "board-header", "arduino", "nir"],
                    help="what to write (see above)")
    sp.add_argument("--out", required=True, help="file to write (arduino: a new or empty folder)")
    sp.add_argument("--board", default="mps2-an386",
                    help="board-header: the emulated board whose firmware compiles it in, which refuses a model "
                         "larger than its RAM for one (a hardware profile with a [firmware] table; default: "
                         "%(default)s)")
    # a plain int: a bad K is refused by the trainer in one line that names the model's trainable layers
    sp.add_argument("--last-k", type=int,
                    help="board-header and arduino, layered (conv) int8 models: the image trains the last K "
                         "trainable blocks (it holds their masters), the earlier ones frozen, as `edgeff board "
                         "train --last-k K` (default: every block)")
    sp.add_argument("--layer-op", choices=["fully_connected", "conv_2d"],
                    help="TFLite op for each dense layer and the head: FULLY_CONNECTED (the default for an MLP; "
                         "what TFLite Micro runs) or the equivalent 1x1 CONV_2D, which LiteRT's reference kernels "
                         "requantize exactly as TFLM (the default for a conv model, which needs CONV_2D anyway)")
    sp.add_argument("--calibration-samples", type=at_least(1),
                    help="nir: training images that calibrate the thresholds (default: 2000, or all when there "
                         "are fewer)")
    sp.add_argument("--percentile", type=between(50, 100), default=99.9, metavar="P",
                    help="nir: each layer's threshold is this percentile of its activities on the calibration "
                         "images (a rate of one spike per step stands for it; larger activities are clipped)")
    data_dir_option(sp)
    json_flag(sp)


def _calibration(args) -> tuple:
    """(training images, percentile) for the NIR export, after the model is known to be exportable."""
    from edgeff.export.nir_graph import FloatModel

    header = FloatModel(args.model).header   # refuses an int8 or convolutional model before any data is read
    data = dataset_of(header, args.data_dir)
    n = args.calibration_samples or min(2000, len(data.train))
    if n > len(data.train):
        raise EdgeFFError(f"--calibration-samples must be between 1 and {len(data.train)}")
    return data.train.images[:n], args.percentile


BOARD_FORMATS = ("board-header", "arduino")   # the exports of a board image, which --last-k shapes


def run(args):
    if args.last_k is not None and args.format not in BOARD_FORMATS:
        raise EdgeFFError(f"--last-k picks the blocks a board trains: it is for --format {' and '.join(BOARD_FORMATS)}"
                          f", not {args.format}, whose file holds the model alone")
    check_out_path(args.out, inputs=[args.model], directory=args.format == "arduino")
    if args.format == "arduino":
        from firmware_bridge.arduino_library import export_arduino

        written = export_arduino(args.model, args.out, args.last_k)
    elif args.format == "board-header":
        from firmware_bridge.board_export import export_board_header

        written = export_board_header(args.model, args.out, args.board, args.last_k)
    else:
        from edgeff.export.write import export_model

        calibration = _calibration(args) if args.format == "nir" else None
        written = export_model(args.model, args.format, args.out, args.layer_op, calibration)
    tflm = (f"\nTensorFlow Lite Micro: arena {written['tflm_arena_bytes']:,} bytes (measured by its interpreter), "
            f"ops {', '.join(written['tflm_ops'])} (docs/tflm.md shows the C++ that runs it)"
            if "tflm_arena_bytes" in written else "")
    print_result(args, written, f"wrote {written['out']}: {written['what']}, {written['bytes']:,} bytes; "
                                f"{_next_step(args, written)}{tflm}")


def _training_options(args, written: dict) -> tuple[str, str]:
    """The `edgeff board train` options a compiled-in layered model needs, and the range of S: its blocks and a step
    they take (the default lr_shift may be too small a step for them). Nothing for an MLP."""
    if written["lr_shifts"] is None:
        return "", ""
    low, high = written["lr_shifts"]
    last_k = f" --last-k {args.last_k}" if args.last_k is not None else ""
    return f"{last_k} --lr-shift S", f" (S from {low} to {high} for these blocks)"


def _next_step(args, written: dict) -> str:
    if args.format == "board-header":
        return (f"on {written['board']} it takes {written['image_bytes']:,} of the {written['board_image_bytes']:,} "
                f"bytes for a model and {written['scratch_bytes']:,} of the {written['board_scratch_bytes']:,} bytes "
                f"of scratch; run it with `edgeff board emulate --board {written['board']} --model-header "
                f"{written['out']}`")
    if args.format == "arduino":
        ram = sum(written["ram_bytes"].values())
        options, lr_range = _training_options(args, written)
        return (f"{ram:,} bytes of static RAM; upload {written['out']}/examples/TrainOverSerial, then "
                f"`edgeff board train --model {args.model}{options} --port /dev/ttyACM0 --out TRAINED`{lr_range}")
    return f"check it with `edgeff verify {args.model} {written['out']}`"
