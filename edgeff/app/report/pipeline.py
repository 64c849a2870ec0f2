"""`edgeff pipeline`: the main job, from data to a report folder.

Stages: train the default collaborative model (resuming if the folder holds a checkpoint), evaluate it
on the test set in both inference modes, quantize it to int8 (PTQ) and evaluate that in the integer
runtime, with the memory plan of on-device training; profile it on the default board (memory and energy
per layer, FF against backprop); export it as ONNX, TFLite and a C header and verify each export in its
own runtime (edgeff.app.report.exports); train the board-sized network on a board over the serial protocol
(a virtual board unless a port is given; edgeff.app.report.on_device); write report.md with the plots and
the model files beside it.
"""
import json
import sys
from pathlib import Path

from edgeff.app.report.exports import exports_markdown, run_exports
from edgeff.app.report.on_device import on_device_markdown, run_on_device
from edgeff.atomic_write import atomic_write_text
from edgeff.data.datasets import load_dataset
from edgeff.profiler.profile_report import profile_model
from edgeff.quant.ptq import quantize
from edgeff.runtime.int_model import IntFFModel, evaluate_int
from edgeff.runtime.memory_plan import plan_summary, training_plan
from edgeff.train.config import load_config
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network
from edgeff.train.trainer import train

PROFILE_BOARD = "nrf52840"


def run_pipeline(config_path, out_dir, data_dir=None, fresh=False, quiet=False, board_port=None,
                 board_samples=6000, val_fraction=None) -> dict:
    """val_fraction overrides the config's validation split, as `edgeff train --val-fraction` does."""
    cfg = load_config(config_path)
    if val_fraction is not None:
        cfg.train.val_fraction, cfg.train.val_size = val_fraction, 0
    out_dir = Path(out_dir)
    data = load_dataset(data_dir, val_size=cfg.train.val_size, val_fraction=cfg.train.val_fraction)
    stage = _stages(quiet, 6 if board_samples else 5)
    stage(f"training {cfg.name} (resumes from a checkpoint in {out_dir})")
    metrics = train(cfg, data, out_dir, fresh=fresh, quiet=quiet)
    net, header = load_network(metrics["model_file"])
    layers = header["architecture"]["eval_layers"]
    stage("evaluating on the test split; quantizing to int8 (int8 and int16 normalization)")
    test = evaluate(net, data.test.images, data.test.labels, layers)
    int_path, norm_bits, val_by_bits, int8_norm_path = _quantize_best(metrics["model_file"], out_dir, data, layers)
    test_int8 = evaluate_int(IntFFModel.from_file(int_path), data.test.images, data.test.labels, layers)
    plan = plan_summary(training_plan(net.sizes, net.n_classes, net.head_layers, [norm_bits] * net.n_layers))
    result = {"config": str(config_path), "data": data.fingerprint, "val": metrics["val"], "test": test,
              "test_int8": test_int8, "int8_model_file": str(int_path), "int8_norm_bits": norm_bits,
              "int8_val_multi_pass_by_norm_bits": val_by_bits,
              "training_memory_bytes": {"sram": plan["sram_bytes"], "flash": plan["flash_bytes"]},
              "train_seconds": metrics["train_seconds"], "gamma_final": metrics["gamma_final"],
              "layer_model_correlation": metrics["layer_model_correlation"],
              "model_file": metrics["model_file"], "plots": metrics["plots"]}
    stage(f"profiling memory and energy on {PROFILE_BOARD}")
    result["profile"] = profile_model(int_path, PROFILE_BOARD, out_dir=out_dir)
    stage("exporting ONNX, TFLite and C headers, verifying each in its runtime")
    result["exports"] = run_exports(out_dir, metrics["model_file"], int8_norm_path, data.test, quiet)
    if board_samples:
        stage(f"on-device learning: a board learns two classes the host never saw, {board_samples} samples over "
              "the serial protocol")
    result["on_device"] = run_on_device(out_dir, data, board_port, board_samples, quiet) if board_samples else None
    stage(f"writing {out_dir / 'report.md'}")
    result["report"] = str(atomic_write_text(out_dir / "report.md", _markdown(cfg, result)))
    atomic_write_text(out_dir / "pipeline.json", json.dumps(result, indent=2))
    return result


def _stages(quiet: bool, total: int):
    """Numbered stage headings on stderr, so a long run says where it is."""
    count = iter(range(1, total + 1))

    def stage(text: str):
        if not quiet:
            print(f"== [{next(count)}/{total}] {text}", file=sys.stderr, flush=True)
    return stage


def _quantize_best(float_path, out_dir, data, layers):
    """PTQ with int8 (TFLite) and int16 (16x8) normalized activations; keep the one better on validation as
    model-int8.safetensors (and the int8 one too when int16 wins: the exporters need TFLite's ops).
    Returns (best path, its norm bits, validation accuracy by norm bits, int8-normalization path)."""
    calib = slice(0, min(2000, len(data.train)))
    val_by_bits, paths = {}, {}
    for bits in (7, 15):
        paths[bits] = out_dir / f"model-int8-norm{bits}.safetensors"
        quantize(float_path, paths[bits], data.train.images[calib], data.train.labels[calib], data.fingerprint,
                 norm_bits=bits)
        val_by_bits[bits] = evaluate_int(IntFFModel.from_file(paths[bits]), data.val.images, data.val.labels,
                                         layers, "multi")["multi_pass"]
    best = max(val_by_bits, key=lambda b: (val_by_bits[b], -b))   # ties: the TFLite-compatible int8
    final = out_dir / "model-int8.safetensors"
    paths[best].replace(final)
    if best == 7:
        paths[15].unlink()
        return final, best, val_by_bits, final
    return final, best, val_by_bits, paths[7]


def _markdown(cfg, r) -> str:
    test, val, q = r["test"], r["val"], r["test_int8"]
    correlations = r["layer_model_correlation"] or [None] * len(val["per_layer"])
    rows = [f"| layer {i + 1} alone | {v:.4f} | {t:.4f} | {c if c is None else f'{c:.3f}'} |"
            for i, (v, t, c) in enumerate(zip(val["per_layer"], test["per_layer"], correlations, strict=True))]
    plots = "\n".join(f"![{Path(p).stem}]({Path(p).name})" for p in r["plots"])
    return f"""# EdgeFF pipeline report: {cfg.name}

Data: {r['data']['directory']} ({r['data']['n_train']} train / {r['data']['n_val']} validation /
{r['data']['n_test']} test samples). Network {cfg.model.sizes}, collaboration `{cfg.collab.mode}`,
protocol `{cfg.train.protocol}`, {cfg.train.epochs} epochs, loss `{cfg.train.loss}`,
negatives `{cfg.train.negatives}`. Training took {r['train_seconds']:.1f} s.

## Accuracy

| inference | validation | test | correlation with the model over training |
|---|---|---|---|
| multi-pass, layers {test['multi_pass_layers']} | {val['multi_pass']:.4f} | {test['multi_pass']:.4f} | |
| one-pass softmax head | {val['one_pass']:.4f} | {test['one_pass']:.4f} | |
{chr(10).join(rows)}

Final collaboration strength gamma per layer: {', '.join(f'{g:.3f}' for g in r['gamma_final'])}.

## Integer runtime (int8, post-training quantization)

Normalized activations: {"int8 (TFLite L2_NORMALIZATION)" if r["int8_norm_bits"] == 7 else "int16 (16x8 FullyConnected)"},
chosen on validation (multi-pass {r["int8_val_multi_pass_by_norm_bits"][7]:.4f} with int8,
{r["int8_val_multi_pass_by_norm_bits"][15]:.4f} with int16).

| inference | float test | int8 test | difference |
|---|---|---|---|
| multi-pass | {test['multi_pass']:.4f} | {q['multi_pass']:.4f} | {100 * (q['multi_pass'] - test['multi_pass']):+.2f} points |
| one-pass | {test['one_pass']:.4f} | {q['one_pass']:.4f} | {100 * (q['one_pass'] - test['one_pass']):+.2f} points |

Integer on-device training of this network needs {r['training_memory_bytes']['sram']:,} bytes of SRAM and
{r['training_memory_bytes']['flash']:,} bytes of flash (`edgeff memory-plan {Path(r['int8_model_file']).name}`).

{_profile_markdown(r["profile"])}

{exports_markdown(r["exports"])}

{on_device_markdown(r["on_device"]) if r["on_device"] else "On-device training: skipped (--board-samples 0)."}

## Training curves

{plots}

Model files: `{Path(r['model_file']).name}` (float) and `{Path(r['int8_model_file']).name}` (int8), EdgeFF
safetensors with a JSON header.
"""


def _profile_markdown(p: dict) -> str:
    mem, fit = p["memory"], p["fit"]
    energy = {w: e["int8"]["total_energy_board_uj"] for w, e in p["energy"].items()}
    plots = "\n".join(f"![{Path(f).stem}]({Path(f).name})" for f in p["plots"])
    verdict = {True: "fits", False: "does not fit"}
    return f"""## Profile on {p['board']} ({p['board_description']})

`edgeff profile {Path(p['model']).name} --board {p['board']}` (figures and their sources: edgeff/hw_profiles/).

| training, batch 1 | FF | backprop |
|---|---|---|
| peak memory, float32 host (KiB) | {mem['ff_float32']['peak_bytes'] / 1024:,.1f} | {mem['backprop_float32']['peak_bytes'] / 1024:,.1f} |
| peak memory, int8 board (KiB) | {mem['ff_int8']['peak_bytes'] / 1024:,.1f} | {mem['backprop_int8']['peak_bytes'] / 1024:,.1f} |
| int8 on this board | {verdict[fit['train_ff_int8']['fits']]} (widest hidden layer that fits: {fit['train_ff_int8']['largest_hidden_width']}) | {verdict[fit['train_backprop_int8']['fits']]} (widest: {fit['train_backprop_int8']['largest_hidden_width']}) |
| energy per training sample (uJ) | {energy['train_ff']:,.1f} | {energy['train_backprop']:,.1f} |

int8 inference {verdict[fit['inference_int8']['fits']]} this board: {energy['inference_one_pass']:,.1f} uJ per image one-pass,
{energy['inference_multi_pass']:,.1f} uJ multi-pass.

{plots}"""
