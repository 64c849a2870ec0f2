"""The dense layer's cost for the profiler: its training and inference memory and its operation counts.

A dense layer with d_in inputs and d_out units has P = d_in * d_out weights and d_out biases. The profiler
(edgeff.profiler) sums these per-layer figures into a network's peak memory and energy; the int8 buffers of
on-device FF training are the runtime's memory plan (edgeff.runtime.memory_plan), so only what the plan does
not hold is here.

Memory, float32 (torch, Adam): the weights and biases, Adam's two moments, their gradients, and Adam's
scratch (two temporaries of the weight matrix's size: sqrt and divide). The activations are what torch
keeps alive at the peak of the layer's backward pass: for FF the layer input, its normalized copy, and four
tensors of the output's size (pre-activation, ReLU output, its gradient, the pre-activation's gradient), all
for one positive and one negative pass (2B rows); for backprop the ReLU output (B rows).
After conv blocks (a layered network, edgeff.profiler.memory_model) the profiler counts, per tensor, what
autograd saves (float32_saved; edgeff.train.saved_tensors records it) and the gradient maps of the backward
pass (float32_backward) instead: the layer trains with CwC (one pass, no negative copy) and its
normalization is part of the graph.
Memory, int8 backprop: the layer's int8 output and int32 error (delta) for the backward pass, and for a
batch int32 gradient accumulators (one per weight and bias). Inference: int8 weights, int32 biases,
multipliers and shifts in flash; the int8 input and output in SRAM.

Operation counts per image or training sample:
  inference, one pass     P MACs; multi-pass runs the layer once per class (n_classes passes)
  FF training sample      2P MACs forward (positive and negative pass) + 2P MACs for the local gradient
                          (coefficient x activity x input, both passes) + P weight updates
  backprop sample         P MACs forward + P backward to the layer's input (not for the first layer)
                          + P for the weight gradient + P weight updates
Memory traffic (bytes): every pass reads the weights once; an update reads and writes the update state
(int8: int16 master, then the int8 weight; float32: Adam reads weight, gradient and two moments and
writes three); activations are written once and read once per use. A neuromorphic profile counts one
neuron update per unit per pass.
"""
FLOAT = 4
INT32 = 4
# bytes moved per weight, per activation and per weight update (its update state's traffic)
TRAFFIC = {"int8": (1, 1, 2 + 2 + 1), "float32": (4, 4, 28)}


def _weights(spec) -> int:
    return spec.in_features * spec.out_features


def float32_memory(spec, method: str, batch: int) -> dict:
    """Bytes of float32 training with Adam, by what they hold (weights, update_state, gradients,
    activations, scratch); method "ff" or "backprop"."""
    d_in, d_out = spec.in_features, spec.out_features
    params = _weights(spec) + d_out
    if method == "ff":
        activations = FLOAT * 2 * batch * (2 * d_in + 4 * d_out)
    else:
        activations = FLOAT * batch * d_out
    return {"weights": FLOAT * params, "update_state": 2 * FLOAT * params, "gradients": FLOAT * params,
            "activations": activations, "scratch": 2 * FLOAT * _weights(spec)}


def float32_saved(spec, batch: int, input_grad: bool, input_saved: bool) -> tuple[dict, bool]:
    """Bytes of each tensor autograd saves for normalize -> Linear -> ReLU in a layered network, and whether
    its output is one of them (it is: ReLU saves its result). Only an input that needs a gradient
    (backprop past the first layer) is kept by the normalization (x * x and x * r save x, rsqrt its
    result, one per row), and not again when the layer before saved that tensor; the Linear keeps its
    normalized input for the weight gradient."""
    d_in, d_out = spec.in_features, spec.out_features
    saved = {}
    if input_grad:
        saved = {"normalizer": FLOAT * batch} if input_saved else {"input": FLOAT * batch * d_in,
                                                                   "normalizer": FLOAT * batch}
    saved.update({"normalized input": FLOAT * batch * d_in, "relu output": FLOAT * batch * d_out})
    return saved, True


def float32_backward(spec, batch: int, input_grad: bool) -> int:
    """Bytes the layer's backward pass holds beyond its saved tensors: ReLU's incoming and outgoing gradient
    (B x d_out each) or, with an input gradient, the normalization's (B x d_in each)."""
    return 2 * FLOAT * batch * max(spec.out_features, spec.in_features if input_grad else 0)


def gradient_elements(spec) -> tuple[int, int]:
    """The int32 accumulators a batch's gradient of this layer needs: (one per weight, one per bias)."""
    return _weights(spec), spec.out_features


def int8_backprop_memory(spec, batch: int) -> dict:
    """Bytes int8 backprop needs beyond the layer's weights, masters and constants: its int8 output and
    int32 delta per sample, and for a batch every gradient accumulated before the update."""
    weights, biases = gradient_elements(spec)
    return {"activations": batch * spec.out_features * (1 + INT32),
            "gradients": INT32 * (weights + biases) if batch > 1 else 0}


def int8_ff_memory(spec, batch: int) -> dict:
    """Bytes of the layer's int8 FF update beyond its parameters in a network the runtime's memory plan does
    not lay out (after conv blocks; an MLP's are the plan's): per sample its int8 normalized input and output
    and an int32 error per unit; a batch's int32 gradient sums."""
    weights, biases = gradient_elements(spec)
    return {"activations": batch * (spec.in_features + spec.out_features * (1 + INT32)), "scratch": 0,
            "gradients": INT32 * (weights + biases) if batch > 1 else 0}


def int8_parameters(spec) -> dict:
    """Bytes of the int8 layer's parameters outside the memory plan (backprop's classifier): int8 weights
    and int32 biases, their int16 and int32 masters, the int32 multipliers and shifts in flash."""
    d_out = spec.out_features
    return {"weights": _weights(spec) + INT32 * d_out, "update_state": 2 * _weights(spec) + INT32 * d_out,
            "constants": 2 * INT32 * d_out}


def inference_memory(spec) -> dict:
    """Bytes of int8 one-pass inference: flash (int8 weights, int32 bias, multiplier and shift per unit)
    and the SRAM of the layer's int8 input and output."""
    d_in, d_out = spec.in_features, spec.out_features
    return {"flash": _weights(spec) + INT32 * d_out + 2 * INT32 * d_out, "sram": d_in + d_out}


def operation_counts(spec, workload: str, first: bool, n_classes: int, precision: str) -> dict:
    """MACs, weight updates, neuron updates and SRAM / flash bytes moved for one image (inference) or one
    training sample; first: the network's first layer (backprop propagates no error to the input)."""
    w, a, update = TRAFFIC[precision]
    d_in, d_out, p = spec.in_features, spec.out_features, _weights(spec)
    if workload in ("inference_one_pass", "inference_multi_pass"):
        passes = n_classes if workload == "inference_multi_pass" else 1
        # inference deployment: weights in flash, activations in SRAM
        return {"macs": passes * p, "updates": 0, "neuron_updates": passes * d_out,
                "sram_bytes": passes * (d_in + d_out) * a, "flash_bytes": passes * p * w}
    if workload == "train_ff":
        return {"macs": 4 * p, "updates": p, "neuron_updates": 2 * d_out,
                "sram_bytes": 2 * p * w + p * update + 4 * (d_in + d_out) * a, "flash_bytes": 0}
    backward = 0 if first else p
    return {"macs": 2 * p + backward, "updates": p, "neuron_updates": d_out,
            "sram_bytes": (2 * p * w) + p * update + 3 * (d_in + d_out) * a, "flash_bytes": 0}
