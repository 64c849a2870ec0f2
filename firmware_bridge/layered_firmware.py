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

from edgeff.c_array import c_definition, c_image_rows
from edgeff.errors import EdgeFFError
from edgeff.op_registry import layer_facet
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer
from edgeff.runtime.int_model import INPUT_ZERO_POINT
from edgeff.runtime.memory_plan import layered_training_plan
from firmware_bridge.messages import MAX_LAYERS

KINDS = ("conv2d", "maxpool2d")
MAX_CLASSES = 64          # EF_CWC_MAX_CLASSES (generated): a step's scores live on the firmware's stack
# the plan's shared buffers (by the start of their name) and the symbol and C type that hold each
SHARED = {"input image": ("cwc_image", "uint8_t"), "activations ping": ("cwc_ping", "int8_t"),
          "activations pong": ("cwc_pong", "int8_t"), "pre-pool output": ("cwc_prepool", "int8_t"),
          "class goodness": ("cwc_goodness", "int32_t"), "dL/dG": ("cwc_dgoodness", "int32_t"),
          "filter row gradient sums": ("cwc_row_sums", "int32_t"),
          "convolution scratch": ("cwc_scratch", "uint64_t"), "softmax table": ("ef_pow2_q15", None)}
# a layer's plan buffers (by what follows "layer N " in their name) and the suffix of the symbol that holds each
PER_LAYER = {"filters int8": "weight", "bias int32": "bias", "multiplier + shift": "requant",
             "pad values": "pad_value", "filter masters int16": "weight_master", "bias masters int64": "bias_master",
             "step multipliers": "step_multiplier"}
ALIGN = 8


def check(model: IntLayeredModel):
    """EdgeFFError naming what the firmware cannot run of the model."""
    for i, spec in enumerate(model.description.layers):
        if spec.kind not in KINDS:
            raise EdgeFFError(f"layer {i + 1} is a {spec.kind} layer; the CwC firmware runs {' and '.join(KINDS)} "
                              "layers only")
    c = model.description.input_shape[0]
    if c > 1 and not _explicit_pad(model, 0, INPUT_ZERO_POINT):
        raise EdgeFFError(f"the model's images have {c} channels and its first layer reads them unpadded: the memory "
                          "plan keeps such an image where it arrives, quantized in place, which keeps a one-channel "
                          "image's order only; quantize it with `--conv-padding batchnorm` (the default) from a "
                          "model whose first block pads")
    if not 2 <= model.n_classes <= MAX_CLASSES or len(model.layers) > MAX_LAYERS:
        raise EdgeFFError(f"the CwC firmware takes 2 to {MAX_CLASSES} classes and up to {MAX_LAYERS} layers; the "
                          f"model has {model.n_classes} classes and {len(model.layers)} layers")


def _explicit_pad(model: IntLayeredModel, i: int, zero_point: int) -> int:
    """Rows and columns of pad values written around layer i's input (0: the kernel pads by itself)."""
    spec = model.description.layers[i]
    return layer_facet(spec, "runtime").explicit_pad(model.layers[i], zero_point) if spec.kind == "conv2d" else 0


def _buffer(name: str, n_bytes: int, ctype: str) -> str:
    size = {"int8_t": 1, "uint8_t": 1, "int32_t": 4, "uint64_t": 8}[ctype]
    return f"static {ctype} {name}[{max(-(-n_bytes // size), 1)}] __attribute__((aligned({ALIGN})));"


def training_plan(trainer: IntLayeredTrainer) -> list:
    """The memory plan of the trainer's step (method ff), whose buffers the firmware holds."""
    return layered_training_plan(trainer.model, trainer.trained, "ff")


def _shared_buffers(plan: list) -> dict:
    """{plan prefix: the plan's shared buffer of that name, or None}."""
    found = {}
    for prefix in SHARED:
        matches = [b for b in plan if b.layer == 0 and b.name.startswith(prefix)]
        found[prefix] = matches[0] if matches else None
    return found


def planned_symbols(trainer: IntLayeredTrainer) -> list:
    """(C symbol, memory-plan Buffer) for every plan buffer the self-test firmware holds in a symbol of its own:
    each layer's arrays, the image, the activation buffers, the class goodness and dL/dG, the row sums, the DSP
    scratch and the softmax table (the step shifts and class goodness factors are fields of the model's struct)."""
    plan = training_plan(trainer)
    out = [(SHARED[prefix][0], b) for prefix, b in _shared_buffers(plan).items() if b is not None]
    for b in plan:
        for name, part in PER_LAYER.items():
            if b.layer and b.name.startswith(f"layer {b.layer} {name}"):
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
    pad = _explicit_pad(model, i, zero_point)
    o, k = layer.weight.shape[:2]
    lines += [c_definition(p + "weight", layer.weight, np.int8, not trained, ALIGN),
              c_definition(p + "bias", layer.bias, np.int32, not trained, ALIGN),
              c_definition(p + "requant", np.concatenate([layer.multiplier, layer.shift]), np.int32, True, ALIGN),
              c_definition(p + "pad_value", layer.pad_value, np.int8, True, ALIGN)]
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
        lines += [c_definition(p + "weight_master", master, np.int16, False, ALIGN),
                  c_definition(p + "bias_master", bias_master, np.int64, False, ALIGN),
                  c_definition(p + "step_multiplier", np.concatenate([s.weight_multiplier, s.bias_multiplier]),
                               np.int64, True, ALIGN)]
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
             f"#define CWC_IMAGE_BYTES {d}", c_image_rows("cwc_test_images", test_images),
             c_image_rows("cwc_images", images), c_definition("cwc_labels", labels, np.int32, True)]
    pointers = {}
    for prefix, buffer in _shared_buffers(plan).items():
        symbol, ctype = SHARED[prefix]
        if ctype is None:   # the kernels' own table
            continue
        if buffer is not None:
            lines.append(_buffer(symbol, buffer.bytes, ctype))
        pointers[symbol] = symbol if buffer is not None else "0"
    scratch = _shared_buffers(plan)["convolution scratch"]
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
    lines += [c_definition("head_weight", head.weight, np.int8, True, ALIGN),
              c_definition("head_bias", head.bias, np.int32, True, ALIGN),
              c_definition("head_requant", np.concatenate([head.multiplier, head.shift]), np.int32, True, ALIGN),
              _buffer("cwc_head_input", d_head, "int8_t")]
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
