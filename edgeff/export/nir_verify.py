"""`edgeff verify MODEL FILE.nir`: run a NIR export in EdgeFF's simulator against the ANN it came from.

For every number of time steps T: the spiking graph's one-pass accuracy and its agreement with the ANN's
predictions, under the file's own rule (NIR's IF: reset to v_reset) and under reset by subtraction (sinabs'
rule, the one rate coding assumes), with the synaptic operations per inference, and the energy they cost on each
neuromorphic profile next to the same model's int8 inference on an MCU. The "rate model" row is the T -> infinity
limit of reset by subtraction: what the folded normalizations alone cost. The export passes when, under its own
rule, some T reaches the ANN's accuracy within ONE_POINT.
"""
from pathlib import Path

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.export.nir_graph import FloatModel, metadata_text, read
from edgeff.export.nir_simulator import BATCH, RESETS, Simulator
from edgeff.export.provenance import KEY, check_source
from edgeff.profiler.spiking_energy import mcu_inference_energy, neuromorphic_profiles, spiking_energy_uj
from edgeff.scoring import multi_pass_accuracy

DEFAULT_TIMESTEPS = (4, 8, 16, 32, 64, 128, 256)
ONE_POINT = 0.01
RESET_NAMES = {"nir": "NIR's IF rule (reset to v_reset)", "subtract": "reset by subtraction (sinabs)"}


def parse_timesteps(text: str) -> list:
    try:
        steps = sorted({int(t) for t in text.split(",")})
    except ValueError:
        steps = []
    if not steps or steps[0] < 1 or steps[-1] > 100_000:
        raise EdgeFFError(f"--timesteps {text!r}: give comma-separated whole numbers of steps from 1 to 100000, "
                          "such as 8,32,128")
    return steps


def _smallest_within(rows: list, key: str, ann_accuracy: float):
    return next((r["timesteps"] for r in rows if r[key] >= ann_accuracy - ONE_POINT), None)


def _spiking_label_scores(sim, model, images, timesteps, reset, progress) -> dict:
    """{T: (n_layers, N, n_classes)} goodness from spike counts, one run of the graph per label (multi-pass):
    each population's activity is its threshold times its rate, squared and averaged as the model scores."""
    from tqdm import tqdm

    c = model.arch["n_classes"]
    thresholds = [sim.graph.nodes[p].v_threshold.astype(np.float64) for p in sim.populations]
    scores = {t: np.zeros((len(sim.populations), len(images), c)) for t in timesteps}
    for label in tqdm(range(c), desc=f"multi-pass, {reset} reset", unit="label", disable=not progress, leave=False):
        for start in range(0, len(images), BATCH):   # spike counts of one batch at a time: memory stays small
            runs = sim.run(model.currents(images[start:start + BATCH], label), timesteps, reset, keep_counts=True)
            for t, result in runs.items():
                acts = [result["spike_counts"][p] * (thr / t) for p, thr in zip(sim.populations, thresholds,
                                                                                 strict=True)]
                scores[t][:, start:start + BATCH, label] = model.goodness(acts)
    return scores


def verify_nir(model_path, nir_path, images: np.ndarray, labels: np.ndarray, timesteps=DEFAULT_TIMESTEPS,
               mcu: str = "nrf52840", multi_pass=False, progress=False) -> dict:
    nir_path = Path(nir_path)
    if not nir_path.is_file():
        raise EdgeFFError(f"{nir_path}: no such file")
    model = FloatModel(model_path)
    graph = read(nir_path)
    check_source(model_path, nir_path, metadata_text(graph, KEY))
    sim = Simulator(graph)
    width = int(np.prod(graph.nodes[sim.inputs[0]].output_type["output"]))
    if width != model.layers[0].n_inputs:
        raise EdgeFFError(f"{nir_path} takes {width} inputs, but {model_path} has {model.layers[0].n_inputs}: verify "
                          "an export against the model it was exported from")
    output = sim.outputs[0]
    currents = model.currents(images)
    ann = model.logits(images).argmax(axis=1)
    ann_accuracy = float((ann == labels).mean())
    rate = sim.rates(currents)[output].argmax(axis=1)
    runs = {reset: sim.run(currents, timesteps, reset, progress=progress, desc=f"NIR simulation, {reset} reset")
            for reset in RESETS}
    chips = neuromorphic_profiles()
    rows = []
    for t in sorted(runs["nir"]):
        row = {"timesteps": t, "neuron_updates": sim.neurons * t}
        for reset, result in runs.items():
            predicted = result[t]["outputs"][output].argmax(axis=1)
            row[f"accuracy_{reset}"] = float((predicted == labels).mean())
            row[f"agreement_{reset}"] = float((predicted == ann).mean())
            row[f"synaptic_ops_{reset}"] = float(result[t]["synaptic_ops"].mean())
        row["energy_uj"] = {chip.name: spiking_energy_uj(chip, row["synaptic_ops_nir"], row["neuron_updates"])
                            for chip in chips}
        rows.append(row)
    if multi_pass:   # ten runs per sample: the graph once per label
        eval_layers = model.arch["eval_layers"]
        ann_scores = model.label_scores(images)
        ann_multi = ann_scores[[l - 1 for l in eval_layers]].sum(axis=0).argmax(axis=1)
        for reset in RESETS:
            scores = _spiking_label_scores(sim, model, images, timesteps, reset, progress)
            for row in rows:
                spiking = scores[row["timesteps"]]
                row[f"multi_pass_accuracy_{reset}"] = multi_pass_accuracy(spiking, labels, eval_layers)
                row[f"multi_pass_agreement_{reset}"] = float(
                    (spiking[[l - 1 for l in eval_layers]].sum(axis=0).argmax(axis=1) == ann_multi).mean())
    first = model.layers[0]
    head_inputs = sum(model.layers[l - 1].n_outputs for l in model.arch["head_layers"])
    within = {reset: _smallest_within(rows, f"accuracy_{reset}", ann_accuracy) for reset in RESETS}
    return {"model": str(model_path), "export": str(nir_path), "images": len(images),
            "ann_accuracy": ann_accuracy, "rate_model_accuracy": float((rate == labels).mean()),
            "rate_model_agreement": float((rate == ann).mean()), "rows": rows,
            "ann_multi_pass_accuracy": multi_pass_accuracy(ann_scores, labels, eval_layers) if multi_pass else None,
            "smallest_t_within_one_point": within, "neurons": sim.neurons,
            "input_macs": first.n_inputs * first.n_outputs,
            "chips": {c.name: {"e_synop_pj": c.e_synop_pj, "e_neuron_update_pj": c.e_neuron_update_pj,
                               "sources": {k: c.sources[k] for k in ("e_synop_pj", "e_neuron_update_pj")}}
                      for c in chips},
            "mcu": mcu_inference_energy(mcu, model.description, model.arch["n_classes"], head_inputs),
            "verdict": "pass" if within["nir"] is not None else "fail"}


def table(result: dict) -> str:
    """The verify result as Markdown: one row per T, then the energy comparison and the verdict."""
    chips = list(result["chips"])
    lines = [f"{result['export']} in EdgeFF's NIR simulator against the ANN {result['model']} on {result['images']} "
             f"images: ANN one-pass accuracy {100 * result['ann_accuracy']:.2f} %; rate model (T -> infinity, the "
             f"folded normalizations alone) {100 * result['rate_model_accuracy']:.2f} %, agreeing with the ANN on "
             f"{100 * result['rate_model_agreement']:.2f} %", "",
             "| T | accuracy (NIR rule) | agreement (NIR rule) | accuracy (subtraction) | agreement (subtraction) "
             "| synaptic ops / inference | " + " | ".join(f"{c} µJ / inference" for c in chips) + " |",
             "|---" * (6 + len(chips)) + "|"]
    if result["ann_multi_pass_accuracy"] is not None:
        lines[0] += (f"; ANN multi-pass accuracy {100 * result['ann_multi_pass_accuracy']:.2f} %, spiking "
                     "multi-pass (10 runs per sample, goodness from spike rates, NIR rule / subtraction): "
                     + ", ".join(f"T={r['timesteps']} {100 * r['multi_pass_accuracy_nir']:.2f} % / "
                                 f"{100 * r['multi_pass_accuracy_subtract']:.2f} %" for r in result["rows"]))
    for r in result["rows"]:
        lines.append(f"| {r['timesteps']} | {100 * r['accuracy_nir']:.2f} % | {100 * r['agreement_nir']:.2f} % | "
                     f"{100 * r['accuracy_subtract']:.2f} % | {100 * r['agreement_subtract']:.2f} % | "
                     f"{r['synaptic_ops_nir']:,.0f} | " + " | ".join(f"{r['energy_uj'][c]:.3g}" for c in chips) + " |")
    mcu = result["mcu"]
    figures = "; ".join(f"{c}: {v['e_synop_pj']} pJ, {v['e_neuron_update_pj']} pJ" for c, v in result["chips"].items())
    energy = (f"Energy: synaptic ops (NIR rule) x e_synop + {result['neurons']} neurons x T x e_neuron_update "
              f"({figures}). The input Affine ({result['input_macs']:,} MACs, once: the constant current) is not in "
              f"it; on the {mcu['board']} host it costs {mcu['first_layer_energy_board_uj']:.3g} µJ. MCU for "
              f"comparison: {mcu['board']} int8 one-pass inference, {mcu['macs']:,} MACs, "
              f"{mcu['energy_board_uj']:.3g} µJ (board) / {mcu['energy_op_uj']:.3g} µJ (arithmetic and memory)")
    lines += ["", energy, "",
              verdict_line(result)]
    return "\n".join(lines)


def verdict_line(result: dict) -> str:
    within = result["smallest_t_within_one_point"]
    other = (f"; by subtraction at T = {within['subtract']}" if within["subtract"] is not None
             else "; by subtraction at no T checked")
    if result["verdict"] == "pass":
        return (f"verify: PASS: {result['export']} reaches the ANN's accuracy within 1 point at T = {within['nir']} "
                f"under NIR's IF rule{other}")
    return (f"verify: FAIL: {result['export']} stays more than 1 point below the ANN's accuracy at every T checked "
            f"under NIR's IF rule{other}")


def plot(result: dict, path):
    from edgeff.plots import line_plot

    steps = [r["timesteps"] for r in result["rows"]]
    series = {RESET_NAMES[reset]: (steps, [100 * r[f"accuracy_{reset}"] for r in result["rows"]]) for reset in RESETS}
    series["ANN"] = (steps, [100 * result["ann_accuracy"]] * len(steps))
    return line_plot(series, path, f"{Path(result['export']).name}: spiking accuracy against time steps",
                     "time steps T", "one-pass test accuracy (%)", log2_x=True)
