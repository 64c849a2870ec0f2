"""`edgeff export`: a model file for another runtime (ONNX, TFLite int8, C headers) or for EdgeFF's board
firmware (board-header, written by the board link)."""
from edgeff.app.options import add_command, json_flag, print_result
from edgeff.atomic_write import check_out_path


def register(sub):
    sp = add_command(sub, "export", "Export a model file for another runtime: ONNX (float or int8 integer ops), "
                                    "TFLite int8, a C header of the TFLite model for firmware (c-header), or a C "
                                    "header of the board image that EdgeFF's board firmware compiles in "
                                    "(board-header, array `board_model`).", run)
    sp.add_argument("model", help="model file (float from `edgeff train`, int8 from `edgeff quantize`/`finetune`)")
    sp.add_argument("--format", required=True, choices=["onnx", "tflite", "c-header", "board-header"],
                    help="what to write (see above)")
    sp.add_argument("--out", required=True, help="file to write")
    sp.add_argument("--layer-op", choices=["fully_connected", "conv_2d"], default="fully_connected",
                    help="TFLite op for each layer: FULLY_CONNECTED (default; what TFLite Micro runs) or the "
                         "equivalent 1x1 CONV_2D, which LiteRT's reference kernels requantize exactly as TFLM")
    json_flag(sp)


def run(args):
    check_out_path(args.out, inputs=[args.model])
    if args.format == "board-header":
        from firmware_bridge.board_export import export_board_header

        written = export_board_header(args.model, args.out)
    else:
        from edgeff.export.write import export_model

        written = export_model(args.model, args.format, args.out, args.layer_op)
    tflm = (f"\nTensorFlow Lite Micro: arena {written['tflm_arena_bytes']:,} bytes (measured by its interpreter), "
            f"ops {', '.join(written['tflm_ops'])} (docs/tflm.md shows the C++ that runs it)"
            if "tflm_arena_bytes" in written else "")
    next_step = (f"run it with `edgeff board emulate --model-header {written['out']}`" if args.format == "board-header"
                 else f"check it with `edgeff verify {args.model} {written['out']}`")
    print_result(args, written, f"wrote {written['out']}: {written['what']}, {written['bytes']:,} bytes; "
                                f"{next_step}{tflm}")
