"""A layered int8 CwC model on the board firmware (firmware_bridge/firmware/board_app/) of the emulated mps2-an386,
loaded and trained over its UART with train_on_board, for its last K blocks (K = 1, 2, 3): the image's bytes, the
RAM the firmware gives it (INFO's SRAM free after the load: the image, the working buffers and the four staging
slots), the training samples per second over the link (train_on_board's clock of the TRAIN exchanges alone, so the
load and the read-back are left out; QEMU's speed on this host, so it moves with the host's load), whether the
image read back equals the NumPy runtime's after the same samples; then the linked firmware's RAM (.data + .bss +
the descriptor's stack, arm-none-eabi-size) against the 256 KB it links in.

    python benchmarks/board_conv_link.py INT8_MODEL --data-dir D [--samples 3] [--lr-shift 16]
"""
import argparse
import tempfile
from pathlib import Path

from edgeff.app.options import dataset_of
from edgeff.model_file import load_model
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge import emulator
from firmware_bridge.board_training import SampleStream, runtime_image, start_image, train_on_board
from firmware_bridge.driver import BoardLink


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--lr-shift", type=int, default=16)
    args = parser.parse_args()
    config = IntTrainingConfig(lr_shift=args.lr_shift, seed=3)
    data = dataset_of(load_model(args.model)[1], args.data_dir)
    stream = SampleStream(data.train.images, data.train.labels, args.samples, 1, 1)
    target = emulator.TARGET
    print(f"{target.board_name}: image buffer {target.image_bytes:,} B, scratch {target.scratch_bytes:,} B")
    print(f"{args.samples} samples, lr_shift {args.lr_shift}")
    print("| K | image | scratch used | samples/s over the link | read back = runtime |\n|---|---|---|---|---|")
    for k in (1, 2, 3):
        image = start_image(args.model, config, k)
        with emulator.EmulatedBoard() as board, BoardLink(board.url, timeout=5.0) as link:
            result = train_on_board(link, args.model, stream, config, quiet=True, last_k=k)
            info = link.hello()
        used = info.sram_budget - info.sram_free - len(image)
        same = result["image"] == runtime_image(args.model, stream, config, last_k=k)
        print(f"| {k} | {len(image):,} B | {used:,} B | {result['samples_per_s']:.1f} | {'yes' if same else 'NO'} |")
    with tempfile.TemporaryDirectory() as tmp:
        sections = emulator.linked_sections(emulator.build("board_app", Path(tmp) / "board.elf"))
    ram = sections["data"] + sections["bss"] + sections["stack"]
    print(f"board_app linked: .data + .bss + stack = {ram:,} B of {target.ram_bytes:,} ({target.ram_bytes - ram:,} "
          "B to spare)")


if __name__ == "__main__":
    main()
