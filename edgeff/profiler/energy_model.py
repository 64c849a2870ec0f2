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

On a board whose core EdgeFF's firmware runs on in an emulator, with_measured() replaces the int8 estimate of
inference and FF training by the instructions the firmware ran there (MeasuredInstructions, measured by the
board link and handed in by `edgeff profile`; the profiler runs no firmware). Each row says where its cycles
came from (cycles_source).
"""
from dataclasses import asdict, dataclass

from edgeff.errors import EdgeFFError
from edgeff.profiler.layers import classifier, cost, description
from edgeff.profiler.memory_model import PRECISIONS

WORKLOADS = ("inference_one_pass", "inference_multi_pass", "train_ff", "train_backprop")
ADAM_OPS_PER_WEIGHT = 4   # multiplies (and as many adds) per Adam update, roughly: two moments, scale, step
ESTIMATE = "estimate"
MEASURED = "measured: instructions on the emulated core"
MEASURED_SPLIT = MEASURED + " (the whole step's count, split over the layers in proportion to their estimates)"
INSTRUCTIONS_NOT_CYCLES = ("QEMU's -icount counts instructions, not cycles: a measured row takes one cycle per "
                           "instruction, and a Cortex-M4 runs about 1 to 1.3 cycles per instruction, so its real "
                           "cycles and board energy are up to about 30% higher (a Cortex-M7, dual-issue, may run "
                           "fewer cycles than instructions)")


@dataclass(frozen=True)
class MeasuredInstructions:
    """What an int8 model's firmware ran on an emulated core, in instructions: one forward pass of each FF
    layer (normalization, FullyConnected, goodness) and one FF training step per sample (both passes, the
    update)."""
    layers: tuple
    train_step: float


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
    cycles_source: str | None = None   # ESTIMATE, or MEASURED (with_measured); None where there are no cycles

    def as_dict(self) -> dict:
        return asdict(self)


def _layer_cost(workload: str, name: str, spec, first: bool, n_classes: int, precision: str) -> LayerCost:
    return LayerCost(name, **cost(spec).operation_counts(spec, workload, first, n_classes, precision))


def inference_macs(layers, n_classes: int, objective) -> list:
    """Each layer's MACs per image in inference, from its cost facet: one pass for channel-wise competitive FF
    ("cwc"), one per class for the label overlay (and an FF MLP)."""
    workload = "inference_one_pass" if objective == "cwc" else "inference_multi_pass"
    return [row.macs for row in layer_costs(workload, layers, n_classes)]


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
            r.cycles_source = ESTIMATE
            mac_pj = profile.e_int8_mult_pj + profile.e_int32_add_pj
            update_pj = profile.e_int32_mult_pj + 2 * profile.e_int32_add_pj
        else:
            r.cycles = (r.macs + ADAM_OPS_PER_WEIGHT * r.updates) * profile.cycles_per_fp32_mac
            r.cycles_source = ESTIMATE
            mac_pj = profile.e_fp32_mult_pj + profile.e_fp32_add_pj
            update_pj = ADAM_OPS_PER_WEIGHT * mac_pj
        r.energy_board_uj = 1e-6 * r.cycles * profile.energy_per_cycle_pj
        r.energy_op_uj = 1e-6 * (r.macs * mac_pj + r.updates * update_pj
                                 + r.sram_bytes * profile.memory_pj_per_byte("sram")
                                 + r.flash_bytes * profile.memory_pj_per_byte("flash"))
    return rows


def with_measured(workload: str, rows: list, measured: MeasuredInstructions, profile, n_classes: int) -> list:
    """int8 rows of with_energy() with the measured instructions as their cycles and board energy from them:
    inference one pass (each FF layer once; the head stays an estimate, the self-test does not run it),
    multi-pass (each FF layer n_classes times) and FF training (one step, which the firmware times as a whole).
    Backprop rows stay estimates: the firmware has no backprop."""
    layers = [r for r in rows if r.name.startswith("layer ")]
    if len(layers) != len(measured.layers):
        raise EdgeFFError(f"{len(measured.layers)} measured layers for a model of {len(layers)} FF layers")
    if workload in ("inference_one_pass", "inference_multi_pass"):
        passes = n_classes if workload == "inference_multi_pass" else 1
        for r, instructions in zip(layers, measured.layers, strict=True):
            r.cycles, r.cycles_source = passes * instructions, MEASURED
    elif workload == "train_ff":
        estimated = sum(r.cycles for r in rows)
        for r in rows:
            r.cycles, r.cycles_source = measured.train_step * r.cycles / estimated, MEASURED_SPLIT
    else:
        return rows
    for r in rows:
        r.energy_board_uj = 1e-6 * r.cycles * profile.energy_per_cycle_pj
    return rows


def total(rows: list, field: str) -> float:
    values = [getattr(r, field) for r in rows]
    return None if any(v is None for v in values) else sum(values)
