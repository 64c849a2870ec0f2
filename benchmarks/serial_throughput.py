"""On-device training throughput over the serial protocol against a virtual board, link against compute.

For each link (emulated 115200- and 921600-baud UARTs, and unthrottled), frame size and way of sending
(one request at a time, or a window of several in flight: BoardLink.train_window), one run in this
process: samples/s over the training phase, the board-side compute time per sample (what a board would
spend anyway), and the bytes each sample costs on the wire, so it shows which of the two limits training.
The virtual board runs the NumPy runtime, so its compute time is the host's, not a microcontroller's
(the profiler estimates those; issue 7's QEMU firmware measures them).

    python benchmarks/serial_throughput.py --model runs/bench-runtime/board-int8.safetensors
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeff.data.datasets import load_dataset  # noqa: E402
from edgeff.runtime.int_training import IntTrainingConfig  # noqa: E402
from firmware_bridge.board_training import SampleStream, train_on_board  # noqa: E402
from firmware_bridge.driver import BoardLink  # noqa: E402
from firmware_bridge.link_model import BITS_PER_BYTE  # noqa: E402
from firmware_bridge.virtual_board import VirtualBoard  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="int8 model file (the board-sized network)")
    ap.add_argument("--samples-per-baud", type=float, default=1.2,
                    help="samples per run on a throttled link, per 1000 baud")
    ap.add_argument("--samples-unthrottled", type=int, default=2000)
    ap.add_argument("--payloads", default="4096,256", help="the board's max frame payloads to run (B)")
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    data = load_dataset(args.data_dir)
    config = IntTrainingConfig(lr_shift=20)
    rows = []
    for baud in (115200, 921600, None):
        for payload in (int(p) for p in args.payloads.split(",")):
            for window in (False, True):
                n = int(args.samples_per_baud * baud / 1000) if baud else args.samples_unthrottled
                stream = SampleStream(data.train.images, data.train.labels, n)
                with tempfile.TemporaryDirectory() as storage, \
                        VirtualBoard(storage, baud=baud, max_payload=payload) as board, \
                        BoardLink(board.url, baud=baud or 115200, timeout=2.0) as link:
                    r = train_on_board(link, args.model, stream, config, checkpoint_every=10**9, quiet=True,
                                       window=window)
                up, down = _wire_bytes_per_sample(data.train.images.shape[1], payload)
                rows.append({"link": f"{baud} baud" if baud else "unthrottled", "payload": payload,
                             "window": window, "samples": n, "samples_per_s": r["samples_per_s"],
                             "compute_ms": r["board_compute_us_per_sample"] / 1e3, "up": up, "down": down,
                             "line_rate": (baud / BITS_PER_BYTE / up) if baud else None,
                             "load_s": r["seconds_by_phase"]["load"], "pull_s": r["seconds_by_phase"]["pull"]})
                print(f"done: {rows[-1]}", file=sys.stderr)
    print("| link | max frame payload (B) | requests in flight | samples | samples/s | board compute per sample (ms) "
          "| compute-bound samples/s | wire bytes per sample (host to board + back) | line rate (samples/s) | "
          "of line rate | of min(line, compute) | model load (s) | pull (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        compute_bound = 1e3 / r["compute_ms"]
        bound = min(compute_bound, r["line_rate"] or float("inf"))
        line_rate = f"{r['line_rate']:.1f}" if r["line_rate"] else "-"
        of_line = f"{r['samples_per_s'] / r['line_rate']:.2f}" if r["line_rate"] else "-"
        print(f"| {r['link']} | {r['payload']} | {'window' if r['window'] else 'one'} | {r['samples']} | "
              f"{r['samples_per_s']:.1f} | {r['compute_ms']:.2f} | {compute_bound:.0f} | {r['up']} + {r['down']} | "
              f"{line_rate} | {of_line} | {r['samples_per_s'] / bound:.2f} | {r['load_s']:.1f} | {r['pull_s']:.1f} |")


def _wire_bytes_per_sample(d_in: int, payload: int) -> tuple[int, int]:
    """Bytes of one sample (host to board, board to host): the STAGE frames and TRAIN, their STAGED and
    TRAINED. The line is full duplex, so the busier direction (host to board) sets the line rate."""
    from firmware_bridge import messages as m
    from firmware_bridge.framing import encode_frame

    record = bytes(2 + d_in)
    limit = payload - m.STAGE.size
    up = down = 0
    for offset in range(0, len(record), limit):
        up += len(encode_frame(m.Request.STAGE, 1, m.STAGE.pack(1, offset) + record[offset:offset + limit]))
        down += len(encode_frame(m.Reply.STAGED, 1, m.STAGED.pack(1, 1, 1)))
    up += len(encode_frame(m.Request.TRAIN, 1, m.TRAIN.pack(1, 1)))
    down += len(encode_frame(m.Reply.TRAINED, 1, m.TRAINED.pack(1, 1, 0)))
    return up, down


if __name__ == "__main__":
    main()
