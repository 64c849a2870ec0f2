"""`edgeff eval`: accuracy of a model file; float models run in torch, int8 models in the integer runtime."""
from edgeff.app.options import add_command, data_dir_option, dataset_of, int_list, json_flag, print_result
from edgeff.model_description import ModelKind


def register(sub):
    sp = add_command(sub, "eval", "Report the accuracy of a model file, multi-pass and/or one-pass; float models "
                                  "run in torch, int8 models in the integer runtime.", run)
    sp.add_argument("model", help="model file written by `edgeff train` or `edgeff quantize`")
    sp.add_argument("--split", choices=["test", "val", "train"], default="test",
                    help="which split to score (val and train are split as recorded in the model file)")
    sp.add_argument("--mode", choices=["multi", "one", "both"], default="both",
                    help="multi-pass (goodness per label), one-pass (softmax head) or both")
    sp.add_argument("--layers", help="comma-separated layers to sum in multi-pass, e.g. 1,2 "
                                     "(default: the layers chosen at training)")
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from edgeff.model_file import load_model
    from edgeff.train.config import layer_list

    _, header = load_model(args.model)
    arch = header.get("architecture") or {}
    split = getattr(dataset_of(header, args.data_dir), args.split)
    layers = arch.get("eval_layers")
    if args.layers:
        layers = layer_list("--layers", "layers", int_list("--layers", args.layers), len(arch["sizes"]) - 1)
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
