"""Operation counts, memory traffic, cycles and energy per layer, per training sample and per inference.

Counts for one layer with d_in inputs and d_out units (P = d_in * d_out weights):
  inference, one pass     P MACs (the one-pass head adds its own row); multi-pass runs the FF layers once
                          per class (n_classes passes, no head)
  FF training sample      2P MACs forward (positive and negative pass) + 2P MACs for the local gradient
                          (coefficient x activity x input, both passes) + P weight updates
  backprop sample         P MACs forward + P backward to the layer's input (not for the first layer)
                          + P for the weight gradient + P weight updates; plus a classifier layer
Memory traffic (bytes): every pass reads the weights once; an update reads and writes the update state
(int8: int16 master, then the int8 weight; float32: Adam reads weight, gradient and two moments and
writes three); activations are written once and read once per use.

An MCU gets two energy figures:
  board energy  cycles x (run current per MHz x supply voltage): what the battery sees; cycles are
                MACs x cycles_per_int8_mac (or _fp32_) + updates x cycles_per_weight_update
  op energy     MACs x (multiply + add) + memory bytes x energy per byte (Horowitz 45 nm): the
                arithmetic and memory alone, a lower bound that shows where energy goes
A neuromorphic profile counts one synaptic operation per MAC, one synaptic update per weight update
and one neuron update per unit per pass (backprop has no native mapping there; its counts are given
for comparison only).
"""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError

WORKLOADS = ("inference_one_pass", "inference_multi_pass", "train_ff", "train_backprop")
BYTES = {"int8": (1, 1, 2 + 2 + 1), "float32": (4, 4, 28)}   # weight, activation, update-state traffic/weight
ADAM_OPS_PER_WEIGHT = 4   # multiplies (and as many adds) per Adam update, roughly: two moments, scale, step


@dataclass
class LayerCost:
    name: str
    macs: int
    updates: int
    neuron_updates: int
    sram_bytes: int
    flash_bytes: int
    cycles: float | None = None
    energy_board_uj: float | None = None
    energy_op_uj: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _layer_counts(workload: str, name: str, d_in: int, d_out: int, first: bool, n_classes: int,
                  precision: str) -> LayerCost:
    w, a, upd = BYTES[precision]
    p = d_in * d_out
    if workload in ("inference_one_pass", "inference_multi_pass"):
        passes = n_classes if workload == "inference_multi_pass" else 1
        # inference deployment: weights in flash, activations in SRAM
        return LayerCost(name, passes * p, 0, passes * d_out, passes * (d_in + d_out) * a, passes * p * w)
    if workload == "train_ff":
        return LayerCost(name, 4 * p, p, 2 * d_out, 2 * p * w + p * upd + 4 * (d_in + d_out) * a, 0)
    backward = 0 if first else p
    return LayerCost(name, 2 * p + backward, p, d_out, (2 * p * w) + p * upd + 3 * (d_in + d_out) * a, 0)


def layer_costs(workload: str, sizes: list, n_classes: int = 10, head_inputs: int = 0,
                precision: str = "int8") -> list:
    """Per-layer counts (no energy yet) of one image (inference) or one training sample."""
    if workload not in WORKLOADS:
        raise EdgeFFError(f"unknown workload '{workload}'; use one of {WORKLOADS}")
    if precision not in BYTES:
        raise EdgeFFError(f"unknown precision '{precision}'; use int8 or float32")
    rows = [_layer_counts(workload, f"layer {i + 1}", d_in, d_out, i == 0, n_classes, precision)
            for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
    if workload == "inference_one_pass" and head_inputs:
        rows.append(_layer_counts(workload, "head", head_inputs, n_classes, False, n_classes, precision))
    if workload == "train_backprop":
        rows.append(_layer_counts(workload, "classifier", sizes[-1], n_classes, False, n_classes, precision))
    return rows


def with_energy(rows: list, profile, precision: str = "int8") -> list:
    """Fill in cycles and energies for a hardware profile."""
    for r in rows:
        if profile.kind == "neuromorphic":
            r.energy_board_uj = 1e-6 * (r.macs * profile.e_synop_pj + r.updates * profile.e_synaptic_update_pj
                                        + r.neuron_updates * profile.e_neuron_update_pj)
            continue
        if precision == "int8":
            r.cycles = r.macs * profile.cycles_per_int8_mac + r.updates * profile.cycles_per_weight_update
            mac_pj = profile.e_int8_mult_pj + profile.e_int32_add_pj
            update_pj = profile.e_int32_mult_pj + 2 * profile.e_int32_add_pj
        else:
            r.cycles = (r.macs + ADAM_OPS_PER_WEIGHT * r.updates) * profile.cycles_per_fp32_mac
            mac_pj = profile.e_fp32_mult_pj + profile.e_fp32_add_pj
            update_pj = ADAM_OPS_PER_WEIGHT * mac_pj
        r.energy_board_uj = 1e-6 * r.cycles * profile.energy_per_cycle_pj
        r.energy_op_uj = 1e-6 * (r.macs * mac_pj + r.updates * update_pj
                                 + r.sram_bytes * profile.memory_pj_per_byte("sram")
                                 + r.flash_bytes * profile.memory_pj_per_byte("flash"))
    return rows


def total(rows: list, field: str) -> float:
    values = [getattr(r, field) for r in rows]
    return None if any(v is None for v in values) else sum(values)
