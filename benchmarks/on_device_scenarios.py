"""On-device learning scenarios on a board over the serial link (firmware_bridge/scenarios.py), side by side:

    new-classes without replay and with a replay buffer of --replay earlier images (one host model: classes 0-7)
    drift with the exposure shift and with the mount shift (one host model: all classes, clean images)

Each run is `edgeff board scenario ...`: the board at --port (default qemu://, the EdgeFF firmware on QEMU's
emulated Cortex-M4) trains on --samples samples; the image it gives back is compared with the NumPy runtime's
after the same samples. Prints one table (accuracy before and after on each evaluation set, samples/s, bit
identity) and writes each run's curve (PNG) and JSON under --out; --plots-dir copies the curves there. A run
whose scenario.json is already under --out is read back, not run again.

    python benchmarks/on_device_scenarios.py [--port qemu://] [--samples 6000] [--host-epochs 5]
        [--out runs/bench-scenarios] [--plots-dir docs] [--json] [--report-only]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.app.report.on_device import scenario_run_to
from edgeff.data.datasets import Split, load_dataset
from edgeff.runtime.int_model import IntFFModel
from firmware_bridge.ports import VirtualDefaults, open_board
from firmware_bridge.scenarios import REPLAY, REPLAY_RATIO, drift, new_classes, taken_for_new

# (scenario, variant, the scenario from the data and the options, the host model's folder: shared by the variants)
RUNS = [("new-classes", "no replay", lambda data, args: new_classes(data, replay=0), "host-new-classes"),
        ("new-classes", "replay", lambda data, args: new_classes(data, replay=args.replay,
                                                                 replay_ratio=args.replay_ratio), "host-new-classes"),
        ("drift", "exposure", lambda data, args: drift(data, "exposure"), "host-clean"),
        ("drift", "mount", lambda data, args: drift(data, "mount"), "host-clean")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", default="qemu://")
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--host-epochs", type=int, default=5)
    p.add_argument("--replay", type=int, default=REPLAY)
    p.add_argument("--replay-ratio", type=int, default=REPLAY_RATIO)
    p.add_argument("--out", default="runs/bench-scenarios")
    p.add_argument("--plots-dir", help="copy each run's curve here as on_device_<run>.png")
    p.add_argument("--json", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="print the tables of the runs already in --out (their scenario.json and model files)")
    args = p.parse_args()
    data = load_dataset()
    out = Path(args.out)
    results = []
    if not args.json:
        print(f"{args.samples} samples on the board at {args.port}, host model trained {args.host_epochs} epochs; "
              "int8 multi-pass test accuracy (rows printed as each run ends)\n")
        print("| scenario | variant | test set | before | after | change | samples/s | image = runtime's |")
        print("|---|---|---|---|---|---|---|---|", flush=True)
    for name, variant, scenario_of, host in RUNS:
        tag = f"{name}-{variant.replace(' ', '-')}"
        print(f"== {tag}", file=sys.stderr, flush=True)
        done = out / tag / "scenario.json"
        if done.exists() or args.report_only:    # a finished run is read back (delete its folder to run it again)
            r = json.loads(done.read_text())
        else:
            r = scenario_run_to(out / tag, scenario_of(data, args),
                                lambda: open_board(args.port, VirtualDefaults(storage=str(out / tag / "flash"))),
                                args.samples, args.host_epochs, quiet=False, host_dir=out / host)
        if name == "new-classes" and not r.get("old_taken_for_new"):    # runs from before the result had it
            old = Split(data.test.images[data.test.labels < 8], data.test.labels[data.test.labels < 8])
            r["old_taken_for_new"] = {when: taken_for_new(IntFFModel.from_file(r[model]), old, (8, 9))
                                      for when, model in (("before", "host_model"), ("after", "board_model"))}
        r["variant"] = variant
        results.append(r)
        if args.plots_dir:
            shutil.copyfile(r["plot"], Path(args.plots_dir) / f"on_device_{tag.replace('-', '_')}.png")
        if not args.json:
            for split in r["before"]:
                print(f"| {r['scenario']} | {r['variant']} | {split} | {r['before'][split]:.4f} | "
                      f"{r['after'][split]:.4f} | {100 * (r['after'][split] - r['before'][split]):+.2f} | "
                      f"{r['samples_per_s']:.1f} | {'yes' if r['runtime_identical'] else 'NO'} |", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    clean = IntFFModel.from_file(out / "host-clean" / "host-int8.safetensors")
    old = Split(data.test.images[data.test.labels < 8], data.test.labels[data.test.labels < 8])
    correct = clean.multi_pass_scores(old.images).argmax(axis=1) == old.labels
    print(f"\nReference: the drift runs' host model, trained on all 10 classes for {args.host_epochs} epochs, gets "
          f"{correct.mean():.4f} on the old classes' test images (every class trained together).")
    print("\nOld-class test images taken for a new class (new-classes): " + "; ".join(
        f"{r['variant']}: {r['old_taken_for_new']['before']:.4f} -> {r['old_taken_for_new']['after']:.4f}"
        for r in results if r.get("old_taken_for_new")))
    print(f"\nBoard: {results[0]['board']}. Accuracy against samples seen on the board:\n")
    for r in results:
        splits = list(r["before"])
        points = "; ".join(f"{c['samples']}: " + "/".join(f"{c[s]:.3f}" for s in splits) for c in r["curve"])
        print(f"- {r['scenario']}, {r['variant']} ({'/'.join(splits)}): {points}")


if __name__ == "__main__":
    main()
