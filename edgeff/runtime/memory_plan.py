"""The memory plan of on-device FF training: every buffer a board needs, with its exact size in bytes.

Laid out as the firmware lays it out. SRAM holds what changes while training (int8 weights used by the
forward pass, int16 master weights, int32 biases and their masters, the collaboration gamma) and what
one training step computes (the input, and per layer the normalized input and the output of one
positive and one negative pass, plus their goodness). Flash holds what training never changes (the
requantization multipliers and shifts, goodness rescaling, the sigmoid table and the one-pass head).
The weight update needs no buffer: each master row is updated from (e * activity_j) and the stored
normalized inputs as it is visited. Each layer's buffers are its kind's (the board_image facet's
training_buffers, through edgeff.op_registry); this module adds what the whole network shares.
"""
from dataclasses import asdict, dataclass

import numpy as np

from edgeff.op_registry import facet, spec_class


@dataclass
class Buffer:
    name: str
    region: str       # "sram" or "flash"
    dtype: str
    shape: tuple
    role: str         # "weights", "update_state" (master weights), "activations" or "constants"
    layer: int = 0    # 1-based FF layer the buffer belongs to; 0 for buffers the whole network shares

    @property
    def bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


# the kind whose layers on-device training runs: a board trains FF MLPs of dense layers (the board image's kind)
TRAINED_KIND = "dense"


def training_plan(sizes: list, n_classes: int, head_layers: list, norm_bits=None) -> list:
    """Buffers of one integer training step (batch size 1, positive + negative pass) of the FF MLP `sizes`.
    norm_bits per layer: 7 (int8 normalized inputs, the default) or 15 (int16, 16x8 mode)."""
    n = len(sizes) - 1
    norm_bits = norm_bits or [7] * n
    plan = [Buffer("input image", "sram", "uint8", (sizes[0],), "activations"),
            Buffer("gamma (Q8)", "sram", "int32", (n,), "update_state")]
    dense = spec_class(TRAINED_KIND)
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        plan += facet(TRAINED_KIND, "board_image").training_buffers(dense(d_in, d_out), i + 1, norm_bits[i])
    d_head = sum(sizes[l] for l in head_layers)
    plan += [Buffer("sigmoid table Q15", "flash", "int16", (256,), "constants"),
             Buffer("head weights int8", "flash", "int8", (n_classes, d_head), "constants"),
             Buffer("head bias, multiplier, shift", "flash", "int32", (3, n_classes), "constants")]
    return plan


def plan_summary(plan: list) -> dict:
    rows = [{**asdict(b), "shape": list(b.shape), "bytes": b.bytes} for b in plan]
    return {"buffers": rows,
            "sram_bytes": sum(b.bytes for b in plan if b.region == "sram"),
            "flash_bytes": sum(b.bytes for b in plan if b.region == "flash")}
