"""Max pooling's cost for the profiler: no parameters and no MACs; what it keeps and moves.

For a C x H x W input and a C x Ho x Wo output (Ho = H // size):
  MACs         0: a window's maximum is comparisons, which no kind counts (a conv block's own pooling does
               not either, edgeff/ops/conv2d/cost.py), so a block pooled by `pool` and the same block
               followed by this layer give the same MACs and early exit the same MACs per image
Memory, float32 (torch; per tensor, as edgeff.train.saved_tensors records it):
  saved        what autograd keeps (float32_saved): only when the input needs a gradient (backprop past the
               first trained layer) max_pool2d keeps its input (not again when the layer before saved that
               tensor: an unpooled conv block's ReLU output) and the int64 index of each output's maximum; its
               output is saved by whatever uses it next (the next block's BatchNorm), so it is counted there.
               Layer-local FF runs it on a detached input with no loss: nothing is saved
  backward     (float32_backward) backprop: the incoming gradient and the zero-filled input gradient;
               layer-local FF has no backward pass, but torch's CPU max_pool2d makes the int64 indices next
               to the output all the same and frees them after, so the layer's step holds both (measured as
               `edgeff profile --measure` does, 95-100% of this figure for 64 images of 20x28x28 pooled by 2:
               tests/test_maxpool.py)
Memory, int8 (estimates, as the conv block's, until a memory plan lays them out):
  inference    SRAM: the int8 input and output; no flash
  training     the int8 output (the next layer's input); backprop also an int32 error per output, which the
               backward pass routes to the input that was the maximum
Operation counts: no MACs, updates or neuron updates; SRAM bytes: the input read and the output written per
pass; backprop training moves them again backward (the output's error in, the input's error out), layer-local
FF only forward.
"""
FLOAT = 4
INT32 = 4
INDEX = 8    # max_pool2d keeps an int64 index per output value
ACTIVATION = {"int8": 1, "float32": 4}   # bytes per activation moved, as the other kinds


def float32_memory(spec, method: str, batch: int) -> dict:
    """No parameters; the activations depend on the layers around it (float32_saved), so
    edgeff.profiler.memory_model fills them in."""
    return {"weights": 0, "update_state": 0, "gradients": 0, "activations": 0, "scratch": 0}


def float32_saved(spec, batch: int, input_grad: bool, input_saved: bool) -> tuple[dict, bool]:
    if not input_grad:
        return {}, False
    saved = {} if input_saved else {"maxpool input": FLOAT * batch * spec.n_inputs}
    saved["maxpool indices"] = INDEX * batch * spec.n_outputs
    return saved, False


def float32_backward(spec, batch: int, input_grad: bool) -> int:
    if not input_grad:
        return batch * (FLOAT + INDEX) * spec.n_outputs     # FF: the output and the indices torch makes
    return FLOAT * batch * (spec.n_outputs + spec.n_inputs)


def gradient_elements(spec) -> tuple[int, int]:
    return 0, 0


def int8_backprop_memory(spec, batch: int) -> dict:
    return {"activations": batch * (spec.n_outputs + INT32 * spec.n_outputs), "scratch": 0, "gradients": 0}


def int8_ff_memory(spec, batch: int) -> dict:
    return {"activations": batch * spec.n_outputs, "scratch": 0, "gradients": 0}


def int8_parameters(spec) -> dict:
    return {"weights": 0, "update_state": 0, "constants": 0}


def inference_memory(spec) -> dict:
    return {"flash": 0, "sram": spec.n_inputs + spec.n_outputs}


def operation_counts(spec, workload: str, first: bool, n_classes: int, precision: str) -> dict:
    """Counts for one image (inference) or one training sample; the first layer's place changes nothing."""
    moved = (spec.n_inputs + spec.n_outputs) * ACTIVATION[precision]
    # passes over the activities: one per class multi-pass; backprop's backward pass moves their errors,
    # layer-local FF never runs backward through a layer without a loss
    passes = {"inference_one_pass": 1, "inference_multi_pass": n_classes, "train_ff": 1, "train_backprop": 2}
    return {"macs": 0, "updates": 0, "neuron_updates": 0, "sram_bytes": passes[workload] * moved,
            "flash_bytes": 0}
