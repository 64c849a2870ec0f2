"""A layered int8 CwC model (conv blocks, max pooling) compiled into firmware: an IntLayeredTrainer's model and
training state as C arrays and the ef_cwc_model (and one-pass head) that edgeff/csrc/kernels/cwc_model.c runs, for
the CwC self-test firmware (firmware/cwc_selftest/), which infers on test images, trains on samples and reports
CRCs the host compares with the NumPy runtime.

Every array and buffer of the step is one C symbol, sized and placed as the memory plan plans it
(edgeff.runtime.memory_plan.layered_training_plan, method "ff"): what training changes in SRAM (non-const), what it
never changes in flash (const), each activation buffer at the plan's size. So the linked firmware's symbols can be
set against the plan buffer by buffer (`planned_symbols`), and a plan too small for a step would show as bits that
differ from the runtime's.

    KINDS                                        the layer kinds the firmware runs
    selftest_header(trainer, test_images, images, labels) -> C source of cwc_selftest_data.h
    state_crc(trainer), inference_crc(model, test_images) -> the CRC-32s the firmware prints for the same state
    planned_symbols(trainer) -> [(C symbol, plan buffer)]: the symbols that hold a plan's buffers
"""
import zlib

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.op_registry import layer_facet
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer
from edgeff.runtime.int_model import INPUT_ZERO_POINT
from edgeff.runtime.memory_plan import layered_training_plan

KINDS = ("conv2d", "maxpool2d")
MAX_CLASSES = 64          # EF_CWC_MAX_CLASSES
MAX_LAYERS = 8            # EF_MAX_LAYERS
_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
            np.dtype(np.int32): "int32_t", np.dtype(np.int64): "int64_t"}
_SUFFIX = {np.dtype(np.int64): "LL"}


def check(model: IntLayeredModel):
    """EdgeFFError naming what the firmware cannot run of the model."""
    for i, spec in enumerate(model.description.layers):
        if spec.kind not in KINDS:
            raise EdgeFFError(f"layer {i + 1} is a {spec.kind} layer; the CwC firmware runs {' and '.join(KINDS)} "
                              "layers only")
    c = model.description.input_shape[0]
    first = model.layers[0]
    if c > 1 and not (model.description.layers[0].kind == "conv2d"
                      and layer_facet(model.description.layers[0], "runtime").explicit_pad(first, INPUT_ZERO_POINT)):
        raise EdgeFFError(f"the model's images have {c} channels and its first layer reads them unpadded; the CwC "
                          "firmware quantizes an image in place, which keeps a one-channel image's order only")
    if not 2 <= model.n_classes <= MAX_CLASSES or len(model.layers) > MAX_LAYERS:
        raise EdgeFFError(f"the CwC firmware takes 2 to {MAX_CLASSES} classes and up to {MAX_LAYERS} layers; the "
                          f"model has {model.n_classes} classes and {len(model.layers)} layers")


def _array(name: str, values, dtype, const: bool) -> str:
    dtype = np.dtype(dtype)
    values = np.ascontiguousarray(values, dtype).ravel()
    body = ", ".join(f"{int(v)}{_SUFFIX.get(dtype, '')}" for v in values) or "0"
    align = " __attribute__((aligned(8)))"
    return f"static {'const ' if const else ''}{_C_TYPES[dtype]} {name}[{max(len(values), 1)}]{align} = {{{body}}};"


def _buffer(name: str, n_bytes: int, ctype: str = "int8_t") -> str:
    size = {"int8_t": 1, "uint8_t": 1, "int32_t": 4, "uint64_t": 8}[ctype]
    return f"static {ctype} {name}[{max(-(-n_bytes // size), 1)}] __attribute__((aligned(8)));"


def training_plan(trainer: IntLayeredTrainer) -> list:
    """The memory plan of the trainer's step (method ff), whose buffers the firmware holds."""
    return layered_training_plan(trainer.model, trainer.trained, "ff")


def _plan_buffer(plan: list, prefix: str):
    found = [b for b in plan if b.layer == 0 and b.name.startswith(prefix)]
    return found[0] if found else None


def planned_symbols(trainer: IntLayeredTrainer) -> list:
    """(C symbol, memory-plan Buffer) for every plan buffer the self-test firmware holds in a symbol of its own:
    each layer's arrays, the image, the activation buffers, the class goodness and dL/dG, the row sums, the DSP
    scratch and the softmax table (the step shifts and class goodness factors are fields of the model's struct)."""
    plan, out = training_plan(trainer), []
    shared = {"input image": "cwc_image", "activations ping": "cwc_ping", "activations pong": "cwc_pong",
              "pre-pool output": "cwc_prepool", "class goodness": "cwc_goodness", "dL/dG": "cwc_dgoodness",
              "filter row gradient sums": "cwc_row_sums", "convolution scratch": "cwc_scratch",
              "softmax table": "ef_pow2_q15"}
    for prefix, symbol in shared.items():
        buffer = _plan_buffer(plan, prefix)
        if buffer is not None:
            out.append((symbol, buffer))
    per_layer = {"filters int8": "weight", "bias int32": "bias", "multiplier + shift": "requant",
                 "pad values": "pad_value", "filter masters int16": "weight_master",
                 "bias masters int64": "bias_master", "step multipliers": "step_multiplier"}
    for b in plan:
        if b.layer:
            for prefix, part in per_layer.items():
                if b.name.startswith(f"layer {b.layer} {prefix}"):
                    out.append((f"l{b.layer - 1}_{part}", b))
    return out


def _layer(trainer: IntLayeredTrainer, i: int, zero_point: int, lines: list) -> str:
    """Layer i's arrays (appended to lines) and its ef_cwc_layer initializer."""
    model, spec, layer = trainer.model, trainer.model.description.layers[i], trainer.model.layers[i]
    (c, h, w), (oc, oh, ow) = spec.in_shape, spec.out_shape
    common = (f".in_h = {h}, .in_w = {w}, .in_c = {c}, .out_h = {oh}, .out_w = {ow}, .out_c = {oc}, "
              f".out_zero_point = {layer.out_zero_point}, .class_multiplier = {int(model.class_multiplier[i])}, "
              f".class_shift = {int(model.class_shift[i])}")
    if spec.kind == "maxpool2d":
        return f"(ef_cwc_layer){{.kind = EF_CWC_MAXPOOL2D, {common}, .pool = {layer.size}}}"
    trained, p = i in trainer.trained, f"l{i}_"
    pad = layer_facet(spec, "runtime").explicit_pad(layer, zero_point)
    o, k = layer.weight.shape[:2]
    lines += [_array(p + "weight", layer.weight, np.int8, not trained),
              _array(p + "bias", layer.bias, np.int32, not trained),
              _array(p + "requant", np.concatenate([layer.multiplier, layer.shift]), np.int32, True),
              _array(p + "pad_value", layer.pad_value, np.int8, True)]
    in_h, in_w = h + 2 * pad, w + 2 * pad
    shape = (f"{{.in_h = {in_h}, .in_w = {in_w}, .in_c = {c}, .out_h = {layer.conv_size[0]}, "
             f".out_w = {layer.conv_size[1]}, .out_c = {o}, .kernel_h = {k}, .kernel_w = {k}, "
             f".stride_h = {layer.stride}, .stride_w = {layer.stride}, .pad_h = {layer.padding - pad}, "
             f".pad_w = {layer.padding - pad}}}")
    block = (f".shape = {shape}, .in_zero_point = {zero_point}, .out_zero_point = {layer.out_zero_point}, "
             f".act_min = {layer.act_min}, .act_max = 127, .pool = {layer.pool}, "
             f".rounding = {int(model.rounding == 'single')}, .weight = (int8_t *){p}weight, "
             f".bias = (int32_t *){p}bias, .multiplier = {p}requant, .shift = {p}requant + {o}")
    if trained:
        master, bias_master = trainer.masters[i]
        s = trainer.scales[i]
        lines += [_array(p + "weight_master", master, np.int16, False),
                  _array(p + "bias_master", bias_master, np.int64, False),
                  _array(p + "step_multiplier", np.concatenate([s.weight_multiplier, s.bias_multiplier]), np.int64,
                         True)]
        block += (f", .weight_master = {p}weight_master, .bias_master = {p}bias_master, "
                  f".step_weight_multiplier = {p}step_multiplier, .step_bias_multiplier = {p}step_multiplier + {o}, "
                  f".step_weight_shift = {s.weight_shift}, .step_bias_shift = {s.bias_shift}")
    return (f"(ef_cwc_layer){{.kind = EF_CWC_CONV2D, {common}, .block = {{{block}}}, .explicit_pad = {pad}, "
            f".pad_value = {p}pad_value, .trained = {int(trained)}}}")


def selftest_header(trainer: IntLayeredTrainer, test_images: np.ndarray, images: np.ndarray, labels) -> str:
    """cwc_selftest_data.h: the model and trainer state, the test images it classifies first and the training
    samples (uint8 images, channel-major, with labels), and the step's buffers at the plan's sizes."""
    model, config = trainer.model, trainer.config
    check(model)
    plan = training_plan(trainer)
    d = model.description.layers[0].n_inputs
    lines = ["/* Generated by firmware_bridge/layered_firmware.py; do not edit. */", "#include \"edgeff_kernels.h\"",
             f"#define CWC_TEST_IMAGES {len(test_images)}", f"#define CWC_SAMPLES {len(labels)}",
             f"#define CWC_IMAGE_BYTES {d}",
             f"static const uint8_t cwc_test_images[{max(len(test_images), 1)}][{d}] = {{"
             + ", ".join("{" + ", ".join(map(str, row)) + "}" for row in test_images) + "};",
             f"static const uint8_t cwc_images[{max(len(labels), 1)}][{d}] = {{"
             + ", ".join("{" + ", ".join(map(str, row)) + "}" for row in images) + "};",
             _array("cwc_labels", labels, np.int32, True)]
    shared = {"input image": ("cwc_image", "uint8_t"), "activations ping": ("cwc_ping", "int8_t"),
              "activations pong": ("cwc_pong", "int8_t"), "pre-pool output": ("cwc_prepool", "int8_t"),
              "class goodness": ("cwc_goodness", "int32_t"), "dL/dG": ("cwc_dgoodness", "int32_t"),
              "filter row gradient sums": ("cwc_row_sums", "int32_t"),
              "convolution scratch": ("cwc_scratch", "uint64_t")}
    pointers = {}
    for prefix, (symbol, ctype) in shared.items():
        buffer = _plan_buffer(plan, prefix)
        if buffer is not None:
            lines.append(_buffer(symbol, buffer.bytes, ctype))
        pointers[symbol] = symbol if buffer is not None else "0"
    scratch = _plan_buffer(plan, "convolution scratch")
    lines.append(f"#define CWC_SCRATCH_BYTES {scratch.bytes if scratch else 0}")
    init = [f"    m->n_layers = {len(model.layers)};", f"    m->n_classes = {model.n_classes};",
            f"    m->frac_bits = {model.quant['goodness_frac_bits']};",
            f"    m->rounding = {int(model.rounding == 'single')};",
            f"    m->eval_mask = {sum(1 << (l - 1) for l in model.eval_layers)}u;",
            f"    m->lr_shift = {config.lr_shift};", f"    m->stochastic = {int(config.rounding == 'stochastic')};",
            f"    m->seed = {config.seed & 0xFFFFFFFF}u;", f"    m->step = {trainer.step_count & 0xFFFFFFFF}u;",
            f"    m->slot[0] = {pointers['cwc_ping']};", f"    m->slot[1] = {pointers['cwc_pong']};",
            f"    m->prepool = {pointers['cwc_prepool']};", f"    m->goodness = {pointers['cwc_goodness']};",
            f"    m->dgoodness = {pointers['cwc_dgoodness']};", f"    m->row_sums = {pointers['cwc_row_sums']};",
            f"    m->scratch = {pointers['cwc_scratch']};"]
    zero_point = INPUT_ZERO_POINT
    for i, layer in enumerate(model.layers):
        init.append(f"    m->layers[{i}] = {_layer(trainer, i, zero_point, lines)};")
        zero_point = layer.out_zero_point
    head, n = model.head, model.n_classes
    d_head = head.weight.shape[1]
    lines += [_array("head_weight", head.weight, np.int8, True), _array("head_bias", head.bias, np.int32, True),
              _array("head_requant", np.concatenate([head.multiplier, head.shift]), np.int32, True),
              _buffer("cwc_head_input", d_head)]
    init += [f"    h->d_in = {d_head};", f"    h->layer_mask = {sum(1 << (l - 1) for l in model.head_layers)}u;",
             "    h->weight = head_weight;", "    h->bias = head_bias;", "    h->multiplier = head_requant;",
             f"    h->shift = head_requant + {n};", "    h->input = cwc_head_input;"]
    lines.append("static void cwc_init(ef_cwc_model *m, ef_ff_head *h)\n{\n" + "\n".join(init) + "\n}")
    return "\n".join(lines) + "\n"


def state_crc(trainer: IntLayeredTrainer) -> int:
    """CRC-32 of every conv block's int8 filters and int32 bias, then each trained block's filter and bias masters,
    in layer order, little-endian as the Cortex-M stores them."""
    crc, model = 0, trainer.model
    for i, layer in enumerate(model.layers):
        arrays = [layer.weight, layer.bias] if model.description.layers[i].kind == "conv2d" else []
        arrays += list(trainer.masters[i]) if i in trainer.trained else []
        for a in arrays:
            crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


def inference_crc(model: IntLayeredModel, images: np.ndarray) -> int:
    """CRC-32 of every image's decision (int32), scores (int64, the evaluation layers' class goodness), one-pass
    class (int32) and the head's logits (int8)."""
    scores, logits = model.multi_pass_scores(images).astype(np.int64), model.head_logits(images)
    crc = 0
    for row, head in zip(scores, logits, strict=True):
        crc = zlib.crc32(np.int32(row.argmax()).tobytes() + row.tobytes() + np.int32(head.argmax()).tobytes()
                         + head.astype(np.int8).tobytes(), crc)
    return crc
