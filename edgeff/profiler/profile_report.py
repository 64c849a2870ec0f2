"""`edgeff profile`: memory and energy of a model on a board, as a table, a JSON document and PNG plots."""
from pathlib import Path

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.model_file import load_model
from edgeff.plots import grouped_bars
from edgeff.profiler.energy_model import (
    INSTRUCTIONS_NOT_CYCLES,
    WORKLOADS,
    MeasuredInstructions,
    layer_costs,
    total,
    with_energy,
    with_measured,
)
from edgeff.profiler.hw_profile import load_profile
from edgeff.profiler.memory_measure import measure_int_training_peak
from edgeff.profiler.memory_model import (
    METHODS,
    PRECISIONS,
    cwc_plans,
    inference_memory,
    largest_width,
    layer_memory,
    layer_update_bytes,
    layered,
    peak_bytes,
    plan_rows,
    planned,
)
from edgeff.runtime.int_layered_training import trainable_layers
from edgeff.runtime.memory_plan import plan_summary


def model_architecture(path) -> dict:
    """The model description (layers), sizes, n_classes, head_layers and (int8 models) norm_bits from a float
    or int8 model file's header."""
    _, header = load_model(path)
    arch = header.get("architecture") or {}
    if "sizes" not in arch:
        raise EdgeFFError(f"{path}: no architecture in the header; not an FF model file")
    quant_layers = (header.get("quantization") or {}).get("layers", [])
    return {"layers": ModelDescription.from_header(arch["layers"], str(path)), "sizes": arch["sizes"],
            "n_classes": arch["n_classes"], "head_layers": arch["head_layers"],
            "norm_bits": [q.get("norm_bits", 7) for q in quant_layers] or None, "int8": bool(quant_layers)}


def layered_plans(model_path, arch: dict) -> dict | None:
    """{k: cwc_plans} for every --last-k of an int8 layered model (k = the trainable blocks last), else None."""
    if not (arch["int8"] and layered(arch["layers"])):
        return None
    from edgeff.runtime.int_layered import IntLayeredModel

    n = len(trainable_layers(IntLayeredModel.from_file(model_path)))
    return {k: cwc_plans(model_path, k) for k in range(1, n + 1)}


def budgets(profile) -> tuple[int, int]:
    """(SRAM, flash) bytes a board leaves to the model."""
    return profile.sram_bytes - profile.sram_reserved_bytes, profile.flash_bytes


def plan_fit(summary: dict, board: str) -> dict:
    """Whether a memory plan (plan_summary) fits a board's budgets."""
    profile = load_profile(board)
    sram, flash = budgets(profile)
    return {"board": profile.name, "sram_budget_bytes": sram, "flash_budget_bytes": flash,
            "fits": summary["sram_bytes"] <= sram and summary["flash_bytes"] <= flash}


def _int8_rows(arch: dict, method: str, batch: int):
    """int8 rows of an int8 layered model from its memory plan of every block (batch 1), else None: the
    profiler's own int8 rows (the MLP's plan, or estimates)."""
    if arch.get("plans") is None or batch != 1:
        return None
    return plan_rows(arch["plans"][max(arch["plans"])][method], len(arch["layers"].layers))


def memory_section(arch: dict, batch: int) -> dict:
    """Per-layer analytic memory and peak for FF and backprop, float32 and int8."""
    out = {}
    for precision in PRECISIONS:
        for method in METHODS:
            rows = (precision == "int8" and _int8_rows(arch, method, batch)) or layer_memory(
                method, precision, arch["layers"], batch, arch["n_classes"], arch["head_layers"], arch["norm_bits"])
            out[f"{method}_{precision}"] = {"layers": [r.as_dict() for r in rows],
                                            "peak_bytes": peak_bytes(method, precision, rows)}
    return out


def measured_section(arch: dict, batch: int, model_path=None, measure_torch=None) -> dict:
    """Measured host peaks next to the analytic ones: torch float32 when given measure_torch (the trainer's
    edgeff.train.torch_memory.measure_torch; the profiler runs no torch itself), NumPy int8 for int8 model
    files."""
    sizes, classes = arch["sizes"], arch["n_classes"]
    out = {}
    for method in METHODS if measure_torch is not None else ():
        rows = layer_memory(method, "float32", arch["layers"], batch, classes)
        measured = measure_torch(method, arch["layers"], batch, classes)
        out[f"{method}_float32_torch"] = _compare(measured["peak_bytes"], peak_bytes(method, "float32", rows))
        if method == "ff":
            for i, (m, a) in enumerate(zip(measured["layer_bytes"], layer_update_bytes(rows), strict=True)):
                out[f"ff_float32_torch_layer_{i + 1}_update"] = _compare(m, a)
    if arch["int8"] and model_path is not None:
        from edgeff.runtime.int_model import IntFFModel
        from edgeff.runtime.int_training import IntTrainingConfig

        model = IntFFModel.from_file(model_path)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2 * batch, sizes[0]), dtype=np.uint8)
        labels = rng.integers(0, classes, 2 * batch)
        measured = measure_int_training_peak(model, IntTrainingConfig(), images, labels, batch)
        analytic = peak_bytes("ff", "int8", layer_memory("ff", "int8", arch["layers"], batch, classes,
                                                         arch["head_layers"], arch["norm_bits"]))
        out["ff_int8_numpy"] = _compare(measured, analytic)
    return out


def _compare(measured: int, analytic: int) -> dict:
    return {"measured_bytes": int(measured), "analytic_bytes": int(analytic),
            "gap": (measured - analytic) / analytic}


def fit_section(arch: dict, profile) -> dict:
    sram, flash = budgets(profile)
    out = {"sram_budget_bytes": sram, "flash_budget_bytes": flash}
    for method in METHODS:
        rows = _int8_rows(arch, method, 1) or layer_memory(method, "int8", arch["layers"], 1, arch["n_classes"],
                                                           arch["head_layers"], arch["norm_bits"])
        need_sram, need_flash = sum(r.sram for r in rows), sum(r.constants for r in rows)
        out[f"train_{method}_int8"] = {"sram_bytes": need_sram, "flash_bytes": need_flash,
                                       "fits": need_sram <= sram and need_flash <= flash}
        if planned(arch["layers"]):   # the MLP of the same depth whose hidden width just fits
            out[f"train_{method}_int8"]["largest_hidden_width"] = largest_width(method, arch["layers"], sram, flash,
                                                                                arch["n_classes"])
    if arch.get("plans"):   # the memory plan of training each number of last blocks
        out["last_k"] = []
        for k, plans in arch["plans"].items():
            entry = {"k": k, "trained_layers": plans["trained_layers"]}
            for method in METHODS:
                summary = plan_summary(plans[method])
                entry[method] = {"sram_bytes": summary["sram_bytes"], "flash_bytes": summary["flash_bytes"],
                                 "fits": summary["sram_bytes"] <= sram and summary["flash_bytes"] <= flash}
            out["last_k"].append(entry)
    inf = inference_memory(arch["layers"], arch["n_classes"])
    out["inference_int8"] = {"sram_bytes": inf["sram"], "flash_bytes": inf["flash"],
                             "fits": inf["sram"] <= sram and inf["flash"] <= flash}
    return out


def energy_section(arch: dict, profile, measured: MeasuredInstructions | None = None) -> dict:
    """Per-layer counts, cycles and energies of every workload, int8 and float32; with measured, the int8 rows
    the firmware ran take its instruction counts as cycles."""
    head_inputs = sum(arch["sizes"][l] for l in arch["head_layers"])
    out = {}
    for workload in WORKLOADS:
        per_precision = {}
        for precision in ("int8", "float32"):
            rows = with_energy(layer_costs(workload, arch["layers"], arch["n_classes"], head_inputs, precision),
                               profile, precision)
            if measured is not None and precision == "int8":
                rows = with_measured(workload, rows, measured, profile, arch["n_classes"])
            per_precision[precision] = {
                "layers": [r.as_dict() for r in rows], "cycles_source": _sources(rows),
                **{f"total_{f}": total(rows, f) for f in ("macs", "updates", "cycles", "energy_board_uj",
                                                           "energy_op_uj")}}
        out[workload] = per_precision
    return out


def _sources(rows: list) -> str | None:
    """Where a workload's cycles came from: the one source of all its rows, or each source with its rows."""
    by_source = {}
    for r in rows:
        by_source.setdefault(r.cycles_source, []).append(r.name)
    if len(by_source) == 1:
        return next(iter(by_source))
    return "; ".join(f"{', '.join(names)}: {source}" for source, names in by_source.items())


def profile_model(model_path, board: str, batch: int = 1, measure: bool = False, out_dir=None,
                  measure_torch=None, instructions: MeasuredInstructions | None = None) -> dict:
    """The profile of a model on a board; with measure, measured host peaks beside the analytic ones
    (measure_torch: see measured_section); with instructions (counted on the board's emulated core by the
    board link), the int8 inference and FF training cycles are those instructions."""
    if batch < 1:
        raise EdgeFFError(f"--batch {batch}: must be at least 1")
    profile = load_profile(board)
    arch = model_architecture(model_path)
    arch["plans"] = layered_plans(model_path, arch)
    result = {"model": str(model_path), "board": profile.name, "board_description": profile.description,
              "board_kind": profile.kind, "sizes": arch["sizes"],
              "layer_kinds": [spec.kind for spec in arch["layers"].layers], "batch": batch,
              "memory": memory_section(arch, batch), "fit": fit_section(arch, profile),
              "energy": energy_section(arch, profile, instructions)}
    if instructions is not None:
        result["measured_instructions"] = {"layers": list(instructions.layers), "train_step": instructions.train_step,
                                           "note": INSTRUCTIONS_NOT_CYCLES}
    if measure:
        result["measured"] = measured_section(arch, batch, model_path, measure_torch)
    if out_dir is not None:
        result["plots"] = write_plots(result, Path(out_dir))
    return result


def write_plots(result: dict, out_dir: Path) -> list:
    mem = result["memory"]
    names = [r["name"] for r in mem["backprop_float32"]["layers"]]
    series = {}
    for key, label in (("ff_float32", "FF float32"), ("backprop_float32", "backprop float32"),
                       ("ff_int8", "FF int8"), ("backprop_int8", "backprop int8")):
        by_name = {r["name"]: r["total"] for r in mem[key]["layers"]}
        series[label] = [by_name.get(n, 0) / 1024 for n in names]
    stem = f"profile-{result['board']}"
    paths = [grouped_bars(names, series, out_dir / f"{stem}-memory.png",
                          f"Training memory per layer, batch {result['batch']} (KiB)", "KiB")]
    energy = result["energy"]
    layer_names = [r["name"] for r in energy["train_backprop"]["int8"]["layers"]]
    e_series = {}
    for workload in WORKLOADS:
        by_name = {r["name"]: r["energy_board_uj"] for r in energy[workload]["int8"]["layers"]}
        e_series[workload.replace("_", " ")] = [by_name.get(n, 0) for n in layer_names]
    paths.append(grouped_bars(layer_names, e_series, out_dir / f"{stem}-energy.png",
                              f"int8 energy per layer on {result['board']} (uJ per image or sample)", "uJ"))
    return [str(p) for p in paths]


def format_table(result: dict) -> str:
    kib = 1024
    mem = result["memory"]
    names = [r["name"] for r in mem["backprop_int8"]["layers"]]
    # a layer's row names its kind (a maxpool2d or flatten row holds no parameters, only what it keeps)
    kinds = {f"layer {i + 1}": kind for i, kind in enumerate(result["layer_kinds"])}
    labels = {n: f"{n} {kinds[n]}" if n in kinds else n for n in names}
    w = max(12, *(len(label) for label in labels.values()))
    lines = [f"{result['model']} on {result['board']} ({result['board_description']}), batch {result['batch']}",
             "", "Training memory per layer (KiB; analytic"
             + ("; int8: the memory plan of training every block" if result["fit"].get("last_k") else "") + ")",
             f"{'layer':{w}s} {'FF f32':>10s} {'BP f32':>10s} {'BP/FF':>6s} {'FF int8':>10s} {'BP int8':>10s} "
             f"{'BP/FF':>6s}"]
    def by(key):
        return {r["name"]: r["total"] for r in mem[key]["layers"]}
    ff32, bp32, ff8, bp8 = by("ff_float32"), by("backprop_float32"), by("ff_int8"), by("backprop_int8")
    for n in names:
        r32 = f"{bp32[n] / ff32[n]:.2f}" if ff32.get(n) else "-"
        r8 = f"{bp8[n] / ff8[n]:.2f}" if ff8.get(n) else "-"
        lines.append(f"{labels[n]:{w}s} {ff32.get(n, 0) / kib:10.1f} {bp32.get(n, 0) / kib:10.1f} {r32:>6s} "
                     f"{ff8.get(n, 0) / kib:10.1f} {bp8.get(n, 0) / kib:10.1f} {r8:>6s}")
    peaks = {k: v["peak_bytes"] for k, v in mem.items()}
    lines.append(f"{'peak':{w}s} {peaks['ff_float32'] / kib:10.1f} {peaks['backprop_float32'] / kib:10.1f} "
                 f"{peaks['backprop_float32'] / peaks['ff_float32']:6.2f} {peaks['ff_int8'] / kib:10.1f} "
                 f"{peaks['backprop_int8'] / kib:10.1f} {peaks['backprop_int8'] / peaks['ff_int8']:6.2f}")
    if "measured" in result:
        lines += ["", "Measured host peaks against the analytic model"]
        for key, m in result["measured"].items():
            lines.append(f"  {key:22s} measured {m['measured_bytes'] / kib:10.1f} KiB   analytic "
                         f"{m['analytic_bytes'] / kib:10.1f} KiB   gap {100 * m['gap']:+.1f}%")
    fit = result["fit"]
    lines += ["", f"Fit (int8, batch 1) in {fit['sram_budget_bytes'] / kib:.0f} KiB SRAM for the model, "
                  f"{fit['flash_budget_bytes'] / kib:.0f} KiB flash"]
    def fit_line(key, f, extra=""):
        return (f"  {key:20s} SRAM {f['sram_bytes'] / kib:8.1f} KiB  flash {f['flash_bytes'] / kib:8.1f} KiB  "
                f"{'fits' if f['fits'] else 'DOES NOT FIT'}{extra}")
    for key in ("train_ff_int8", "train_backprop_int8", "inference_int8"):
        f = fit[key]
        extra = f", largest hidden width that fits: {f['largest_hidden_width']}" if "largest_hidden_width" in f else ""
        lines.append(fit_line(key, f, extra))
    if "last_k" in fit:
        lines.append("  the memory plan of the last k blocks (edgeff memory-plan --last-k K):")
        for entry in fit["last_k"]:
            ratio = f", backprop / FF SRAM {entry['backprop']['sram_bytes'] / entry['ff']['sram_bytes']:.2f}"
            lines.append(fit_line(f"last {entry['k']}, FF", entry["ff"]))
            lines.append(fit_line(f"last {entry['k']}, backprop", entry["backprop"], ratio))
    lines += ["", "Energy per image / training sample, int8 (board energy from cycles; op energy from Horowitz 45 nm)",
              f"{'workload':22s} {'MACs':>10s} {'cycles':>12s} {'board uJ':>10s} {'op uJ':>8s} {'f32 op uJ':>9s}  "
              "cycles from"]
    for workload, e in result["energy"].items():
        i8, f32 = e["int8"], e["float32"]
        cyc = f"{i8['total_cycles']:12.0f}" if i8["total_cycles"] is not None else f"{'-':>12s}"
        op = f"{i8['total_energy_op_uj']:8.2f}" if i8["total_energy_op_uj"] is not None else f"{'-':>8s}"
        fop = f"{f32['total_energy_op_uj']:9.2f}" if f32["total_energy_op_uj"] is not None else f"{'-':>9s}"
        lines.append(f"{workload:22s} {i8['total_macs']:10d} {cyc} {i8['total_energy_board_uj']:10.2f} {op} {fop}  "
                     f"{i8['cycles_source'] or '-'}")
    if "measured_instructions" in result:
        lines.append(f"  {result['measured_instructions']['note']}")
    if result.get("plots"):
        lines += ["", "plots: " + ", ".join(result["plots"])]
    return "\n".join(lines)
