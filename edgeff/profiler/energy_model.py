"""Operation counts, memory traffic, cycles and energy per layer, per training sample and per inference.

Each layer's counts (MACs, weight updates, neuron updates, bytes moved) are its kind's cost facet's
(edgeff/ops/<kind>/cost.py, through edgeff.op_registry). Inference one pass adds the head's row;
multi-pass runs the FF layers once per class (n_classes passes, no head); backprop adds a classifier layer.

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
from edgeff.profiler.layers import classifier, cost, description
from edgeff.profiler.memory_model import PRECISIONS

WORKLOADS = ("inference_one_pass", "inference_multi_pass", "train_ff", "train_backprop")
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


def _layer_cost(workload: str, name: str, spec, first: bool, n_classes: int, precision: str) -> LayerCost:
    return LayerCost(name, **cost(spec).operation_counts(spec, workload, first, n_classes, precision))


def layer_costs(workload: str, layers, n_classes: int = 10, head_inputs: int = 0,
                precision: str = "int8") -> list:
    """Per-layer counts (no energy yet) of one image (inference) or one training sample, for a model
    description or an FF MLP given by its sizes."""
    if workload not in WORKLOADS:
        raise EdgeFFError(f"unknown workload '{workload}'; use one of {WORKLOADS}")
    if precision not in PRECISIONS:
        raise EdgeFFError(f"unknown precision '{precision}'; use int8 or float32")
    model = description(layers)
    rows = [_layer_cost(workload, f"layer {i + 1}", spec, i == 0, n_classes, precision)
            for i, spec in enumerate(model.layers)]
    if workload == "inference_one_pass" and head_inputs:
        rows.append(_layer_cost(workload, "head", classifier(head_inputs, n_classes), False, n_classes, precision))
    if workload == "train_backprop":
        rows.append(_layer_cost(workload, "classifier", classifier(model.layers[-1].n_outputs, n_classes), False,
                                n_classes, precision))
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
