"""On-device training over a bad line: samples/s and resends of `edgeff board train`'s own code path against
a virtual board whose line corrupts, loses and doubles bytes in both directions, at default link settings
(no hand-set frame size or timeout: the host adapts both to the line).

For each fault rate p (each byte corrupted with probability p, lost with p, delivered twice with p, both
directions), one run of the same samples: samples/s over the training phase and as a share of the clean
line's, model load and pull times, requests, resends, NAKs, damaged replies, timeouts and reconnections,
and whether the weights read back are bit-identical to the clean run's (and the NumPy runtime's).

    python benchmarks/bad_line.py --model board-int8.safetensors --samples 200
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeff.data.datasets import load_dataset
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge.board_training import SampleStream, runtime_image, train_on_board
from firmware_bridge.driver import BoardLink
from firmware_bridge.virtual_board import VirtualBoard


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="int8 model file (the board-sized network)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--baud", type=int, default=115200, help="the emulated UART's speed (0: unthrottled)")
    ap.add_argument("--rates", default="0,0.001,0.0033,0.01", help="fault probabilities per byte, comma-separated")
    ap.add_argument("--seed", type=int, default=1, help="seed of the line's faults")
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    data = load_dataset(args.data_dir)
    config = IntTrainingConfig(lr_shift=20)
    stream = SampleStream(data.train.images, data.train.labels, args.samples)
    reference = runtime_image(args.model, stream, config)
    baud = args.baud or None
    rows = []
    for p in map(float, args.rates.split(",")):
        faults = f"corrupt={p},byte_drop={p},byte_duplicate={p},seed={args.seed}"
        with tempfile.TemporaryDirectory() as storage, VirtualBoard(storage, baud=baud, faults=faults) as board, \
                BoardLink(board.url, baud=baud or 115200) as link:
            r = train_on_board(link, args.model, stream, config, quiet=False)
        rows.append({"p": p, "samples_per_s": r["samples_per_s"], "load_s": r["seconds_by_phase"]["load"],
                     "pull_s": r["seconds_by_phase"]["pull"], "seconds": r["seconds"], **r["link"],
                     "identical": r["image"] == reference})
        print(f"done: {rows[-1]}", file=sys.stderr)
    clean = rows[0]["samples_per_s"] if rows[0]["p"] == 0 else None
    line = f"{baud} baud" if baud else "unthrottled"
    print(f"`python benchmarks/bad_line.py --model MODEL --samples {args.samples} --baud {args.baud} --rates "
          f"{args.rates} --seed {args.seed}` ({line}, virtual board; each byte corrupted, lost and doubled with "
          "probability p, both directions)\n")
    print("| p per fault | samples/s | of clean | whole run (s) | load (s) | pull (s) | requests | resent | NAKs | "
          "damaged replies | timeouts | reconnections | bit-identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = f"{r['samples_per_s'] / clean:.2f}" if clean else "-"
        print(f"| {r['p']:.2%} | {r['samples_per_s']:.2f} | {share} | {r['seconds']:.1f} | {r['load_s']:.1f} | "
              f"{r['pull_s']:.1f} | {r['requests']} | {r['resent']} | {r['naks']} | {r['bad_frames']} | "
              f"{r['timeouts']} | {r['reconnects']} | {'yes' if r['identical'] else 'NO'} |")


if __name__ == "__main__":
    main()
