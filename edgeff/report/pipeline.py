"""`edgeff pipeline`: the main job, from data to a report folder.

Today: train the default collaborative model (resuming if the folder holds a checkpoint), evaluate it
on the test set in both inference modes, and write report.md with the plots and the model file beside
it. Later stages (quantize, profile, export, on-device training) add their sections here.
"""
import json
from pathlib import Path

from edgeff.atomic_write import atomic_write_text
from edgeff.data.datasets import load_dataset
from edgeff.train.config import load_config
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network
from edgeff.train.trainer import train


def run_pipeline(config_path, out_dir, data_dir=None, fresh=False, quiet=False) -> dict:
    cfg = load_config(config_path)
    out_dir = Path(out_dir)
    data = load_dataset(data_dir, val_size=cfg.train.val_size)
    metrics = train(cfg, data, out_dir, fresh=fresh, quiet=quiet)
    net, header = load_network(metrics["model_file"])
    layers = header["architecture"]["eval_layers"]
    test = evaluate(net, data.test.images, data.test.labels, layers)
    result = {"config": str(config_path), "data": data.fingerprint, "val": metrics["val"], "test": test,
              "train_seconds": metrics["train_seconds"], "gamma_final": metrics["gamma_final"],
              "layer_model_correlation": metrics["layer_model_correlation"],
              "model_file": metrics["model_file"], "plots": metrics["plots"]}
    result["report"] = str(atomic_write_text(out_dir / "report.md", _markdown(cfg, result)))
    atomic_write_text(out_dir / "pipeline.json", json.dumps(result, indent=2))
    return result


def _markdown(cfg, r) -> str:
    test, val = r["test"], r["val"]
    rows = [f"| layer {i + 1} alone | {v:.4f} | {t:.4f} | {c if c is None else f'{c:.3f}'} |"
            for i, (v, t, c) in enumerate(zip(val["per_layer"], test["per_layer"],
                                              r["layer_model_correlation"] or [None] * len(val["per_layer"])))]
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

## Training curves

{plots}

Model file: `{Path(r['model_file']).name}` (EdgeFF safetensors with a JSON header).
"""
