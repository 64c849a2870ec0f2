"""Training memory of the conv FF models, measured in torch next to the profiler's analytic model.

For each config and batch size: the float32 training peak of channel-wise competitive FF trained layer by
layer (each block's forward, backward and Adam step in turn, its input detached) and of backprop through
the same layers and the softmax head, each measured in a fresh process (edgeff.train.torch_memory: VmHWM
above the RSS before the model was built), with the analytic peaks of edgeff.profiler.memory_model beside
them. No data set is needed: the measurement trains on random images of the config's input shape.
A second table gives, per layer, the bytes autograd saves for the backward pass as its saved-tensor hooks
record them (edgeff.train.saved_tensors) and as the analytic model counts them
(edgeff.profiler.memory_model.saved_tensors), and the tensors behind the analytic figure.

    python benchmarks/conv_memory.py [--configs ff-conv-tiny ff-conv-board ...] [--batches 1 64]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeff.profiler.memory_model import layer_memory, peak_bytes, saved_tensors  # noqa: E402
from edgeff.train.config import description_of, load_config  # noqa: E402
from edgeff.train.saved_tensors import saved_bytes  # noqa: E402
from edgeff.train.torch_memory import measure_torch  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "edgeff" / "models"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["ff-conv-board", "ff-conv-tiny", "ff-conv-small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    args = ap.parse_args()
    print("| config | batch | FF measured (KiB) | FF analytic (KiB) | backprop measured (KiB) | backprop analytic "
          "(KiB) | backprop / FF measured | backprop / FF analytic |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        description = description_of(load_config(MODELS / f"{name}.toml"))
        for batch in args.batches:
            got = {}
            for method in ("ff", "backprop"):
                print(f"{name} batch {batch}: measuring {method}", file=sys.stderr)
                measured = measure_torch(method, description, batch)["peak_bytes"]
                analytic = peak_bytes(method, "float32", layer_memory(method, "float32", description, batch, 10))
                got[method] = (measured, analytic)
            (fm, fa), (bm, ba) = got["ff"], got["backprop"]
            print(f"| {name} | {batch} | {fm / 1024:.0f} | {fa / 1024:.0f} | {bm / 1024:.0f} | {ba / 1024:.0f} | "
                  f"{bm / fm:.2f} | {ba / fa:.2f} |")
    print("\n| config | batch | method | layer | saved, hooks (KiB) | saved, analytic (KiB) | analytic tensors (KiB) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        description = description_of(load_config(MODELS / f"{name}.toml"))
        for batch in args.batches:
            for method in ("ff", "backprop"):
                print(f"{name} batch {batch}: recording {method}'s saved tensors", file=sys.stderr)
                recorded = saved_bytes(method, description, batch)
                hooks = recorded["layers"] + ([recorded["head"]] if method == "backprop" else [])
                for i, (got, (saved, _)) in enumerate(zip(hooks, saved_tensors(method, description, batch),
                                                          strict=True)):
                    layer = f"layer {i + 1}" if i < len(description.layers) else "classifier"
                    tensors = ", ".join(f"{k} {v / 1024:.1f}" for k, v in saved.items())
                    print(f"| {name} | {batch} | {method} | {layer} | {got / 1024:.1f} | "
                          f"{sum(saved.values()) / 1024:.1f} | {tensors} |")


if __name__ == "__main__":
    main()
