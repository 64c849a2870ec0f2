"""The conv block's cost for the profiler: training and inference memory and operation counts.

Sizes, for a block with C_in x H x W inputs, C_out k x k filters, a C_out x Ho x Wo convolution output and
a C_out x Hp x Wp pooled output:
  parameters   P = C_out * C_in * k^2 filter weights, C_out biases, 2 C_in BatchNorm scale and shift
               (and 2 C_in running statistics, kept with the weights)
  MACs         M = P * Ho * Wo per image (the BatchNorm adds C_in * H * W multiply-adds)

Memory, float32 (torch, Adam; what edgeff.train.saved_tensors records with autograd's saved-tensor hooks):
  saved        what autograd keeps for the block's backward pass (float32_saved), per sample unless noted:
               BatchNorm's input (C_in H W; not when the layer before already saved that tensor: backprop
               through a block without pooling, whose ReLU output is the next block's input), BatchNorm's
               batch mean and inverse deviation (2 C_in, per batch), BatchNorm's output (C_in H W, the
               convolution's input, kept for the filter gradient), the ReLU output (C_out Ho Wo; ReLU saves
               its result, and MaxPool's saved input is that same tensor) and, pooled, MaxPool's int64
               indices (C_out Hp Wp). The convolution output itself is not kept: the convolution saves its
               input and filters, and the output dies once ReLU has its own. The pooled output is saved by
               whatever uses it next (the next block's BatchNorm, or FF's goodness), so it is counted there
               (edgeff.profiler.memory_model), once.
  backward     the gradient maps alive at once at the peak of the block's backward pass beyond its saved
               tensors (float32_backward): the largest over its nodes, MaxPool (the pooled gradient and the
               ReLU output's, zero-filled), ReLU (its incoming and outgoing gradient, C_out Ho Wo each; the
               indices are freed by then), the convolution (the input gradient, and oneDNN's copies of the
               output gradient and the input in its blocked layout, channels padded to one vector of
               floats: 16 with AVX-512, 8 with AVX2, onednn_channel_block; torch's slow path, batch 1 with
               a kernel of 3 or less and a small input, unfolds one image at a time instead: the C_in k^2 x
               Ho Wo im2col buffer; ReLU's output and the indices are freed by then) and, when the input
               needs a gradient (backprop past the first block), BatchNorm's (the input gradient beside the
               incoming one; the convolution's saved input freed)
  scratch      Adam's two temporaries of the filter bank (sqrt and divide), after the backward pass
Memory, int8 (a board, CMSIS-NN's arm_convolve_s8 layout; estimates until a memory plan lays them out):
  inference    flash: int8 filters, int32 bias, per-channel int32 multiplier and shift (BatchNorm folded
               into the filters); SRAM: the int8 input and output and the im2col scratch of two columns of
               int16 (2 x C_in k^2 x 2 bytes)
  training     (estimates) the block's int8 BatchNorm output, convolution output and pooled output, an
               int32 error per convolution output and the im2col scratch: backprop keeps every block's
               until its backward pass, FF one block's at a time; a batch sums int32 gradients

Operation counts per image or training sample (MACs):
  inference, one pass   M; multi-pass (label overlay) runs the block once per class
  FF training sample    M forward, M for the filter gradient and M for the input gradient inside the block
                        (the BatchNorm's parameters need it): 3M, the same for backprop, whose first block
                        too needs its input gradient for its BatchNorm; FF's saving is memory, not MACs
"""
import functools
import re
from pathlib import Path

FLOAT = 4
INT32 = 4
INDEX = 8    # MaxPool2d keeps an int64 index per pooled value
# bytes moved per weight, per activation and per weight update (its update state's traffic), as the dense layer
TRAFFIC = {"int8": (1, 1, 2 + 2 + 1), "float32": (4, 4, 28)}


def _filters(spec) -> int:
    return spec.out_channels * spec.in_channels * spec.kernel * spec.kernel


def _params(spec) -> int:
    return _filters(spec) + spec.out_channels + 2 * spec.in_channels


def _sizes(spec) -> tuple[int, int, int]:
    """Values per sample: (input, convolution output, pooled output)."""
    c, h, w = spec.conv_shape
    return spec.n_inputs, c * h * w, spec.n_outputs


def macs(spec) -> int:
    """Multiply-accumulates of one image's forward pass (convolution and BatchNorm)."""
    _, ho, wo = spec.conv_shape
    return _filters(spec) * ho * wo + spec.n_inputs


def im2col_elements(spec) -> int:
    """One image's im2col matrix: C_in k^2 rows, one column per output pixel."""
    _, ho, wo = spec.conv_shape
    return spec.in_channels * spec.kernel * spec.kernel * ho * wo


def float32_saved(spec, batch: int, input_grad: bool, input_saved: bool) -> tuple[dict, bool]:
    """Bytes of each tensor autograd saves for the block's backward pass (the module docstring's "saved"),
    and whether its output is one of them (unpooled: the ReLU output). input_saved: the layer before saved
    this block's input tensor already. BatchNorm keeps its input whether or not it needs a gradient (its
    scale's gradient reads it), so input_grad changes nothing here."""
    x, conv, pooled = _sizes(spec)
    saved = {} if input_saved else {"batchnorm input": FLOAT * batch * x}
    saved.update({"batchnorm statistics": 2 * FLOAT * spec.in_channels, "batchnorm output": FLOAT * batch * x,
                  "relu output": FLOAT * batch * conv})
    if spec.pool > 1:
        saved["maxpool indices"] = INDEX * batch * pooled
    return saved, spec.pool == 1


def _onednn(spec, batch: int) -> bool:
    """Whether torch runs this float32 CPU convolution on oneDNN (its use_mkldnn rule for a plain
    convolution), not on its im2col slow path."""
    return batch > 1 or spec.kernel > 3 or spec.n_inputs > 20480


@functools.cache
def onednn_channel_block() -> int:
    """Channels per group of oneDNN's blocked float32 layout on this CPU: one vector register, 16 floats where
    it runs AVX-512, else 8 (AVX2). Read from the CPU's flags (Linux), so the facet stays torch-free."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8
    return 16 if re.search(r"\bavx512f\b", flags) else 8


def _padded(channels: int) -> int:
    block = onednn_channel_block()
    return -(-channels // block) * block


def float32_backward(spec, batch: int, input_grad: bool) -> int:
    """Bytes the block's backward pass holds at its peak beyond the saved tensors still alive (the module
    docstring's "backward"): the largest over its nodes of the gradient maps they hold at once, less the
    saved tensors the nodes before them have freed."""
    x, conv, pooled = (FLOAT * batch * n for n in _sizes(spec))
    indices = INDEX * batch * spec.n_outputs if spec.pool > 1 else 0
    if _onednn(spec, batch):
        copies = conv * _padded(spec.out_channels) // spec.out_channels + x * _padded(
            spec.in_channels) // spec.in_channels
    else:
        copies = FLOAT * im2col_elements(spec)
    nodes = [2 * conv - indices,                        # ReLU: its incoming and outgoing gradient
             x + copies - indices]                      # the convolution: input gradient, oneDNN's copies
    if spec.pool > 1:
        nodes.append(pooled + conv)                     # MaxPool: the pooled gradient and the ReLU output's
    if input_grad:
        nodes.append(2 * x - indices - conv - x)        # BatchNorm: its incoming and outgoing gradient
    return max(nodes)


def float32_memory(spec, method: str, batch: int) -> dict:
    """Bytes of float32 training with Adam, by what they hold; method "ff" (channel-wise competitive, one
    pass) or "backprop". The activations and the backward pass's gradient maps depend on the layers around
    the block (float32_saved, float32_backward), so edgeff.profiler.memory_model fills them in."""
    params = _params(spec) + 2 * spec.in_channels     # + the BatchNorm's running statistics
    trained = _params(spec)
    return {"weights": FLOAT * params, "update_state": 2 * FLOAT * trained, "gradients": FLOAT * trained,
            "activations": 0, "scratch": 2 * FLOAT * _filters(spec)}


def gradient_elements(spec) -> tuple[int, int]:
    """The int32 accumulators a batch's gradient needs: (one per filter weight, one per bias and BatchNorm
    parameter)."""
    return _filters(spec), spec.out_channels + 2 * spec.in_channels


def _int8_update_buffers(spec, batch: int) -> int:
    """Per sample, what one block's int8 update reads back: its int8 BatchNorm output (the convolution's
    input), its int8 convolution output (ReLU and pooling's backward read it), its int8 pooled output and an
    int32 error per convolution output."""
    x, conv, pooled = _sizes(spec)
    return batch * (x + conv + pooled + INT32 * conv)


def _im2col_int8(spec) -> int:
    """CMSIS-NN's arm_convolve_s8 scratch: two im2col columns of int16."""
    return 2 * spec.in_channels * spec.kernel * spec.kernel * 2


def int8_backprop_memory(spec, batch: int) -> dict:
    """int8 backprop (an estimate): the block's update buffers, kept for every block until the backward pass
    reaches it; its im2col scratch; a batch's int32 gradient sums."""
    weights, biases = gradient_elements(spec)
    return {"activations": _int8_update_buffers(spec, batch), "scratch": _im2col_int8(spec),
            "gradients": INT32 * (weights + biases) if batch > 1 else 0}


def int8_ff_memory(spec, batch: int) -> dict:
    """One block's int8 FF update beyond its parameters (an estimate until a memory plan of the integer update
    lays it out): the same buffers as backprop's, but FF needs them for one block at a time."""
    return int8_backprop_memory(spec, batch)


def int8_parameters(spec) -> dict:
    """int8 filters and int32 biases, their int16 and int32 masters, the per-channel multipliers and shifts."""
    c = spec.out_channels
    return {"weights": _filters(spec) + INT32 * c, "update_state": 2 * _filters(spec) + INT32 * c,
            "constants": 2 * INT32 * c}


def inference_memory(spec) -> dict:
    c = spec.out_channels
    return {"flash": _filters(spec) + INT32 * c + 2 * INT32 * c,
            "sram": spec.n_inputs + spec.n_outputs + _im2col_int8(spec)}


def operation_counts(spec, workload: str, first: bool, n_classes: int, precision: str) -> dict:
    """MACs, weight updates, neuron updates and SRAM / flash bytes moved for one image (inference) or one
    training sample (first: the network's first layer; the block's BatchNorm needs its input gradient
    anyway, so it changes nothing)."""
    w, a, update = TRAFFIC[precision]
    x, conv, pooled = _sizes(spec)
    m, p = macs(spec), _params(spec)
    if workload in ("inference_one_pass", "inference_multi_pass"):
        passes = n_classes if workload == "inference_multi_pass" else 1
        return {"macs": passes * m, "updates": 0, "neuron_updates": passes * conv,
                "sram_bytes": passes * (x + conv + pooled) * a, "flash_bytes": passes * p * w}
    return {"macs": 3 * m, "updates": p, "neuron_updates": conv,
            "sram_bytes": 3 * p * w + p * update + 3 * (x + conv + pooled) * a, "flash_bytes": 0}
