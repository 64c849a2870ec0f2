"""Which other NIR readers run EdgeFF's .nir files as EdgeFF's simulator does (issue 20's reader check).

For an exported model (the directory benchmarks/nir_accuracy.py writes: model.safetensors and model.nir) it
reads the file back with nir.read, runs the first --samples Fashion-MNIST test images for T steps in EdgeFF's
simulator (NIR's IF rule) and in each installed reader, and prints how often their predictions agree and the
largest difference of the head's outputs. Readers are optional and not in any extra; install them with torch
pinned:  pip install -c <(echo torch==2.13.0) norse==1.1.0 snntorch==1.0.0

    python benchmarks/nir_readers.py --model-dir /tmp/nir/bench/board-784-64-32 [--samples 200] [--timesteps 32]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import load_dataset  # noqa: E402
from edgeff.export.nir_graph import FloatModel  # noqa: E402
from edgeff.export.nir_simulator import Simulator  # noqa: E402


def norse_outputs(graph, currents: np.ndarray, timesteps: int) -> np.ndarray:
    import norse.torch as norse
    import torch

    net, state, total = norse.from_nir(graph), None, 0
    x = torch.from_numpy(currents.astype(np.float32))
    with torch.no_grad():
        for _ in range(timesteps):
            y, state = net(x, state)
            total = total + y
    return (total / timesteps).numpy()


def snntorch_mapping(graph) -> str:
    """snnTorch 1.0.0 reads NIR's IF as a leaky neuron; what it builds, for the table."""
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    leaky = [m for m in net.modules() if type(m).__name__ == "Leaky"]
    return f"reads it; each IF becomes snn.Leaky with beta {float(leaky[0].beta):.2f}" if leaky else "reads it"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--timesteps", type=int, default=32)
    args = ap.parse_args()
    import nir

    graph = nir.read(Path(args.model_dir) / "model.nir")
    currents = FloatModel(Path(args.model_dir) / "model.safetensors").currents(
        load_dataset().test.images[:args.samples])
    ours = next(iter(Simulator(graph).run(currents, [args.timesteps])[args.timesteps]["outputs"].values()))
    print(f"| reader | what it does with the file | predictions equal to EdgeFF's simulator ({args.samples} test "
          f"images, T={args.timesteps}) | largest output difference (mean output {np.abs(ours).mean():.3g}) |")
    print("|---|---|---|---|")
    try:
        theirs = norse_outputs(graph, currents, args.timesteps)
        print(f"| norse | runs it (IF as IFBoxCell, its thresholds and v_reset) | "
              f"{np.mean(ours.argmax(1) == theirs.argmax(1)):.1%} | {np.abs(ours - theirs).max():.3g} |")
    except ImportError:
        print("| norse | not installed | - | - |")
    try:
        print(f"| snnTorch | {snntorch_mapping(graph)}: a leak NIR's IF does not have, so it is not run | - | - |")
    except ImportError:
        print("| snnTorch | not installed | - | - |")


if __name__ == "__main__":
    main()
