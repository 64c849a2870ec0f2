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
    sp.add_argument("--early-exit", metavar="T1,T2,...",
                    help="layered FF models: also early-exit inference (LightFF) at these confidence thresholds "
                         "(0..1): accuracy and MACs per image against the threshold")
    data_dir_option(sp)
    json_flag(sp)


def _thresholds(text: str) -> list:
    from edgeff.errors import EdgeFFError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 <= v <= 1 for v in values):
        raise EdgeFFError(f"--early-exit {text!r}: give confidence thresholds between 0 and 1, e.g. 0.5,0.9,0.99")
    return values


def run(args):
    from edgeff.model_file import is_layered, load_model
    from edgeff.train.config import layer_list

    _, header = load_model(args.model)
    arch = header.get("architecture") or {}
    split = getattr(dataset_of(header, args.data_dir), args.split)
    layers = arch.get("eval_layers")
    if args.layers:
        layers = layer_list("--layers", "layers", int_list("--layers", args.layers), len(arch["sizes"]) - 1)
    thresholds = _thresholds(args.early_exit) if args.early_exit else None
    if arch.get("objective") == "backprop" and args.mode == "both":
        args.mode = "one"   # a backprop network has no goodness: its softmax head is its prediction
    if arch.get("kind") == ModelKind.INT8:
        from edgeff.runtime.int_layered import IntLayeredModel
        from edgeff.runtime.int_model import IntFFModel, evaluate_int

        # a layered (conv) model decides by class goodness (edgeff.runtime.int_layered), an MLP by its labels
        model = (IntLayeredModel if is_layered(arch) else IntFFModel).from_file(args.model)
        scores = evaluate_int(model, split.images, split.labels, layers, args.mode)
        arithmetic = "int8 (integer runtime)"
    else:
        from edgeff.profiler.energy_model import inference_macs
        from edgeff.train.evaluate import early_exit_table, evaluate
        from edgeff.train.model_io import load_network

        net = load_network(args.model)[0]
        scores = evaluate(net, split.images, split.labels, layers, args.mode)
        if thresholds:
            macs = inference_macs(net.description, net.n_classes, getattr(net, "objective", None))
            scores["early_exit"] = early_exit_table(net, split.images, split.labels, thresholds, layers, macs)
        arithmetic = "float32 (torch)"
    result = {"model": str(args.model), "split": args.split, "arithmetic": arithmetic, **scores}
    lines = [f"{args.model} on {args.split} ({result['n_samples']} samples), {arithmetic}:"]
    if "multi_pass" in result:
        lines.append(f"  multi-pass accuracy {result['multi_pass']:.4f} (goodness of layers {layers})")
        # a layered model numbers every layer, its parameterless ones (maxpool2d, flatten) too: say which is which
        kinds = [f" ({layer['kind']})" if is_layered(arch) else "" for layer in arch["layers"]]
        lines += [f"    layer {i + 1} alone {a:.4f}{kinds[i]}" for i, a in enumerate(result["per_layer"])]
    if "one_pass" in result:
        lines.append(f"  one-pass accuracy   {result['one_pass']:.4f} (softmax head)")
    if "early_exit" in result:
        lines.append("  early exit: threshold  accuracy  MACs/image  exits per layer")
        lines += [f"    {e['threshold']:>17.3f}  {e['accuracy']:.4f}  {e['macs_per_image']:10.0f}  "
                  + ", ".join(f"{l}: {share:.2f}" for l, share in e["exit_share"].items())
                  for e in result["early_exit"]]
    print_result(args, result, "\n".join(lines))
