"""The dense layer in the NIR export: a rate-coded integrate-and-fire population behind an Affine synapse.

The ANN layer relu(normalize(x) @ W.T + b) becomes Affine -> IF (edgeff/export/nir_graph.py walks the layers).
A neuron that integrates a constant current I and resets by subtraction fires at rate I / threshold (at most one
spike per step), so an IF population of threshold `threshold` carries the activity a as the rate a / threshold,
clipped at one spike per step. The Affine therefore multiplies its input rates back by the previous population's
threshold (`in_threshold`; 1 for the constant input current) and by the normalization's scale: the per-sample
length normalization has no NIR primitive, so a constant scale (its mean on the calibration data) takes its
place (`scale`), which is the conversion's one approximation of the ANN beyond rate coding.
"""
import numpy as np

from edgeff.export.nir_graph import if_population, nir_package


def parameters(spec, index: int, tensors: dict) -> tuple:
    """(weight, bias) float64 of layer `index` (0-based), from the float model file's tensors."""
    return tensors[f"layers.{index}.weight"].astype(np.float64), tensors[f"layers.{index}.bias"].astype(np.float64)


def forward(spec, params: tuple, x: np.ndarray, scale) -> np.ndarray:
    """relu((x * scale) @ W.T + b): the ANN layer with its normalization as `scale`, a per-row column (the exact
    normalization, edgeff.export.nir_graph.row_scale) or one number (the folded one the spiking graph computes)."""
    weight, bias = params
    return np.maximum((x * scale) @ weight.T + bias, 0.0)


def nodes(spec, params: tuple, scale: float, in_threshold: float, threshold: float) -> dict:
    """{"affine": ..., "if": ...}: the layer's NIR nodes, the Affine on the previous population's spikes (or the
    input current, in_threshold 1) and its IF population of `threshold`."""
    weight, bias = params
    return {"affine": nir_package().Affine(weight=(weight * (scale * in_threshold)).astype(np.float32),
                                 bias=bias.astype(np.float32)),
            "if": if_population(spec.out_features, threshold)}
