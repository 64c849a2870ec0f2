"""Instructions per MAC of the int8 CONV_2D, and per output of MAX_POOL_2D, on an emulated board's core (--board:
mps2-an386, the Cortex-M4, by default), for each block of a convolutional model config (--config: the board-sized
edgeff/models/ff-conv-board.toml by default): its convolution (stride 1, its padding) and its pooling.

Builds the conv check firmware (firmware_bridge/firmware/conv_check) twice around one call of each layer's kernel,
with the core's DSP path (on the Cortex-M4 / M7: im2col and SMLAD) and with the portable C loops
(EDGEFF_PORTABLE_C), runs both under `qemu-system-arm -icount shift=0` (SysTick ticks times the calibration loop's
instructions per tick, firmware_bridge/instruction_counts.py) and checks every output of both against the NumPy
reference. The cases are random int8 inputs and filters with the usual quantization of a ReLU layer: input and
output zero point -128, clamp [-128, 127], per-channel multipliers in [2^30, 2^31) and shifts scaled to the sums,
double rounding; the kernels' instruction counts do not depend on the values.

    python benchmarks/conv_icount.py [--config edgeff/models/ff-conv-board.toml] [--board mps2-an386]
"""
import argparse
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.errors import EdgeFFError
from edgeff.runtime import conv2d
from edgeff.runtime.requantize import INT32_MAX
from firmware_bridge import emulator, instruction_counts
from firmware_bridge.conv_check import ConvCase, PoolCase

ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_MAC = 2.5       # issue 19's target per layer on the Cortex-M4 (CMSIS-NN's arm_convolve_s8 as reference)


def blocks_of(config: Path) -> list:
    """(input (h, w, c), out_channels, kernel, padding, pool) of each conv block, in order."""
    model = tomllib.loads(config.read_text())["model"]
    c, h, w = model["input_shape"]
    blocks = []
    for layer in model["layers"]:
        if layer["kind"] != "conv2d":
            raise EdgeFFError(f"{config}: layer kind {layer['kind']!r}; this benchmark measures conv2d blocks only")
        k, pad, pool, out_c = layer["kernel"], layer.get("padding", 0), layer.get("pool", 1), layer["out_channels"]
        blocks.append(((h, w, c), out_c, k, pad, pool))
        h, w, c = conv2d.output_size(h, k, 1, pad) // pool, conv2d.output_size(w, k, 1, pad) // pool, out_c
    return blocks


def cases_of(blocks, rng) -> tuple[list, list]:
    convs, pools = [], []
    for (h, w, c), out_c, k, pad, pool in blocks:
        x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
        f = rng.integers(-127, 128, (out_c, k, k, c)).astype(np.int8)
        typical = np.sqrt(k * k * c) * 74 * np.hypot(74, 128)     # about the sums' spread
        shift = (5 - np.round(np.log2(typical)) + rng.integers(-1, 1, out_c)).astype(np.int32)
        mult = rng.integers(1 << 30, INT32_MAX, out_c, endpoint=True).astype(np.int32)
        bias = rng.integers(-int(typical), int(typical), out_c).astype(np.int32)
        out = (conv2d.output_size(h, k, 1, pad), conv2d.output_size(w, k, 1, pad))
        conv = ConvCase(x, -128, f, bias, mult, shift, -128, -128, 127, (1, 1), (pad, pad), out, "double")
        convs.append(conv)
        pools.append(PoolCase(conv.reference(), pool, -128, 127))
    return convs, pools


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "edgeff/models/ff-conv-board.toml")
    p.add_argument("--board", default=emulator.DEFAULT_BOARD,
                   help="the emulated board (a hardware profile with a [firmware] table; default: %(default)s)")
    args = p.parse_args()
    target = emulator.target_of(args.board)
    blocks = blocks_of(args.config)
    convs, pools = cases_of(blocks, np.random.default_rng(19))
    with tempfile.TemporaryDirectory() as tmp:
        dsp = instruction_counts.measure_kernels(convs, pools, Path(tmp) / "dsp.elf", target=target)
        portable = instruction_counts.measure_kernels(convs, pools, Path(tmp) / "portable.elf", portable=True,
                                                      target=target)
    print(f"{args.config.name} on the emulated {target.board_name} ({target.qemu_machine}, "
          f"{' '.join(target.cpu_flags)}); calibration: {dsp['per_tick']:.2f} instructions per SysTick tick; every "
          f"output equal to the NumPy reference's: DSP path {dsp['same']}, portable C {portable['same']}\n")
    print("| layer | MACs | portable C: instructions | per MAC | DSP path: instructions | per MAC | scratch (bytes) "
          f"| target <= {TARGET_PER_MAC} per MAC |")
    print("|---|---|---|---|---|---|---|---|")
    n = len(convs)
    for i, (conv, block) in enumerate(zip(convs, blocks, strict=True)):
        (h, w, c), out_c, k, pad, _ = block
        slow, fast = portable["cases"][i]["instructions"], dsp["cases"][i]["instructions"]
        per_mac = fast / conv.macs
        verdict = f"{'met' if per_mac <= TARGET_PER_MAC else 'not met'} ({per_mac!r})"
        print(f"| {i + 1}: conv {h}x{w}x{c} -> {out_c}, {k}x{k}, padding {pad} | {conv.macs:,} | {slow:,.0f} | "
              f"{slow / conv.macs:.3f} | {fast:,.0f} | {per_mac:.3f} | {dsp['cases'][i]['scratch']:,} | {verdict} |")
    print("\n| layer | outputs | portable C: instructions | per output | DSP build: instructions | per output |")
    print("|---|---|---|---|---|---|")
    for i, (pool, block) in enumerate(zip(pools, blocks, strict=True)):
        slow, fast = portable["cases"][n + i]["instructions"], dsp["cases"][n + i]["instructions"]
        shape = "x".join(str(v) for v in pool.x.shape[1:])
        print(f"| {i + 1}: max pool {block[4]}x{block[4]} of {shape} | {pool.outputs:,} | {slow:,.0f} | "
              f"{slow / pool.outputs:.2f} | {fast:,.0f} | {fast / pool.outputs:.2f} |")


if __name__ == "__main__":
    try:
        main()
    except EdgeFFError as exc:
        sys.exit(f"error: {exc}")
