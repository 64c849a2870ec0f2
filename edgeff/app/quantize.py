"""`edgeff quantize`: post-training quantization, float model file -> int8 model file."""
from edgeff.app.options import (
    add_command,
    at_least,
    between,
    data_dir_option,
    dataset_of,
    json_flag,
    print_result,
)
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError


def register(sub):
    sp = add_command(sub, "quantize", "Post-training quantization: float model file -> int8 model file for the "
                                      "integer runtime and boards (per-channel int8 weights, calibrated activation "
                                      "scales).", run)
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
    sp.add_argument("--conv-padding", choices=["batchnorm", "zero-point"], default="batchnorm",
                    help="conv models: what a padded block's input is padded with once its BatchNorm is folded in: "
                         "batchnorm (the value BatchNorm maps to 0, as torch pads; an explicit pad, then VALID; "
                         "the default) or zero-point (TFLite's CONV_2D padding; differs from torch at the borders, "
                         "10 points of the board model's accuracy: docs/conv_int8.md)")
    sp.add_argument("--from-scratch", type=int, metavar="SEED",
                    help="keep only the number formats of MODEL; start the weights from a fresh random "
                         "init (seeded), for integer training from scratch")
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from edgeff.model_file import load_model
    from edgeff.quant.ptq import quantize

    check_out_path(args.out, inputs=[args.model])
    _, header = load_model(args.model)
    data = dataset_of(header, args.data_dir)
    n = args.calibration_samples or min(2000, len(data.train))
    if n > len(data.train):
        raise EdgeFFError(f"--calibration-samples must be between 1 and {len(data.train)}")
    written = quantize(args.model, args.out, data.train.images[:n], data.train.labels[:n], data.fingerprint,
                       args.from_scratch, percentile=args.calibration_percentile, norm_bits=args.norm_bits,
                       rounding=args.rounding, conv_padding=args.conv_padding)
    scales = ", ".join(f"{layer['out_scale']:.4g}" for layer in written["quantization"]["layers"])
    print_result(args, {"model": str(args.out), **written["quantization"]},
                 f"wrote {args.out}: int8 weights (per channel), activation scales "
                 f"{scales}; check it with `edgeff eval {args.out}`")
