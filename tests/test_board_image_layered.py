"""The board image of a layered CwC int8 model (format 2, firmware_bridge/board_image.py): a trainer's tensors round
trip exactly through pack_image / unpack_image + merge_header into IntLayeredModel and its masters, for kernel-
padded and explicitly padded blocks, a standalone max pooling and several --last-k; the step factors are the
trainer's; every malformed image is refused naming what is wrong; MLP images keep format 1."""
import struct

import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.op_registry import KINDS, facet
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer, load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge import board_image as bi
from firmware_bridge.messages import LAYERED_MODEL_FORMAT, MODEL_FORMAT
from tests.test_conv_ptq import MIXED, PADDED, _quantized
from tests.test_cwc_firmware import POOLED, _samples

CONFIG = IntTrainingConfig(lr_shift=8, seed=3)


@pytest.fixture(scope="module")
def padded(tmp_path_factory):   # every block's input padded explicitly with its pad values (batchnorm padding)
    return _quantized(tmp_path_factory, "image-padded", PADDED)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):   # unpadded, a standalone max pooling, single rounding
    return _quantized(tmp_path_factory, "image-pooled", POOLED, "--rounding", "single")


def _trained_image(path, last_k, steps=0, data=None):
    trainer = load_layered_trainer(path, CONFIG, last_k)
    if steps:
        _, images, labels = _samples(data, 0, steps)
        for x, y in zip(images, labels, strict=True):
            trainer.step(x[None], np.array([y]))
    _, header = load_model(path)
    header = {**header, "int_training": {"step": trainer.step_count}}
    return trainer, header, bi.pack_image(trainer.tensors(), header)


@pytest.mark.parametrize("case", ["padded", "pooled"])
@pytest.mark.parametrize("last_k", [None, 1])
def test_a_trainers_tensors_round_trip_exactly(case, last_k, request):
    _, path, data, _ = request.getfixturevalue(case)
    trainer, header, image = _trained_image(path, last_k, steps=3, data=data)
    assert image[4] == LAYERED_MODEL_FORMAT and len(image) % bi.ALIGN == 0
    tensors, image_header = bi.unpack_image(image)
    want = trainer.tensors()
    assert set(tensors) == set(want)
    for name, value in want.items():
        assert tensors[name].dtype == value.dtype and np.array_equal(tensors[name], value), name
    merged = bi.merge_header(header, image_header)
    assert merged["int_training"]["step"] == 3
    model = IntLayeredModel.from_tensors(tensors, merged)
    masters = {i: facet(model.description.layers[i].kind, "runtime").load_masters(model.layers[i], i, tensors, "x")
               for i in trainer.trained}
    again = IntLayeredTrainer(model, CONFIG, last_k, masters, merged["int_training"]["step"])
    assert again.trained == trainer.trained
    _, images, labels = _samples(data, 0, 6)
    for x, y in zip(images[3:], labels[3:], strict=True):   # the pulled state continues as the trainer does
        trainer.step(x[None], np.array([y]))
        again.step(x[None], np.array([y]))
    for name, value in trainer.tensors().items():
        assert np.array_equal(again.tensors()[name], value), name
    offsets = bi.array_offsets(image)
    for i, s in trainer.scales.items():   # the step factors are the trainer's, made from the header's scales
        at, dtype, shape = offsets[f"layers.{i}.step_multipliers"]
        got = np.frombuffer(image, "<i8", 2 * shape[1], at).reshape(shape)
        assert np.array_equal(got, [s.weight_multiplier, s.bias_multiplier])
        assert at % bi.ALIGN == 0


def test_a_quantized_model_without_masters_is_an_image_with_no_trained_block(pooled):
    _, path, _, _ = pooled
    tensors, header = load_model(path)
    image = bi.pack_image(tensors, header)
    assert image[bi.LAYERED_FIXED.offsets["trained_mask"]] == 0
    got, _ = bi.unpack_image(image)
    assert not any(name.endswith("master") for name in got)
    assert len(image) < len(_trained_image(path, None)[2])


def test_pack_refuses_what_a_board_cannot_train(padded, tmp_path_factory):
    _, path, _, _ = padded
    trainer = load_layered_trainer(path, CONFIG, None)
    tensors, header = trainer.tensors(), load_model(path)[1]
    first_only = {k: v for k, v in tensors.items() if not k.startswith("layers.1.") or "master" not in k}
    with pytest.raises(EdgeFFError, match=r"layers \[1\] train .*, but a board trains the last k trainable layers"):
        bi.pack_image(first_only, header)
    arch = {**header["architecture"], "eval_layers": [2, 1]}
    with pytest.raises(EdgeFFError, match="eval_layers .* ascending order"):
        bi.pack_image(tensors, {**header, "architecture": arch})
    _, mixed, _, _ = _quantized(tmp_path_factory, "image-mixed", MIXED)   # conv, maxpool2d, conv, flatten, dense
    with pytest.raises(EdgeFFError, match="layer 4 is a flatten layer; the CwC firmware runs conv2d and maxpool2d"):
        bi.pack_image(*load_model(mixed))
    bad = dict(tensors)
    bad["layers.1.weight_master"] = bad["layers.1.weight_master"] + 256
    with pytest.raises(EdgeFFError, match="not the rounding of its masters"):
        bi.pack_image(bad, header)


def _records(image: bytes) -> list:
    """(common record offset, kind record offset, kind) of each layer of a format-2 image."""
    pos, out = bi.LAYERED_FIXED.size, []
    for _ in range(image[bi.LAYERED_FIXED.offsets["n_layers"]]):
        kind = KINDS[image[pos]]
        out.append((pos, pos + bi.LAYERED_LAYER.size, kind))
        pos += bi.LAYERED_LAYER.size + facet(kind, "board_image").RECORD.size
    return out


def _set(image: bytes, at: int, fmt: str, value) -> bytes:
    out = bytearray(image)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def _corruptions(image: bytes) -> list:
    """(name, corrupted image, what the refusal says) for an image of the padded model trained with --last-k 1."""
    rec = _records(image)
    common, conv = bi.LAYERED_LAYER.offsets, facet("conv2d", "board_image").RECORD.offsets
    fixed, arrays = bi.LAYERED_FIXED.offsets, bi.array_offsets(image)
    (c0, k0, _), (c1, k1, _) = rec
    header_end = rec[-1][1] + facet("conv2d", "board_image").RECORD.size
    cases = [("no magic", b"EFFX" + image[4:], "no 'EFFB' magic"),
             ("format 3", _set(image, fixed["format"], "<B", 3), "format 3; this side reads formats 1 and 2"),
             ("flags", _set(image, fixed["flags"], "<B", 1), "header is invalid"),
             ("one class", _set(image, fixed["n_classes"], "<B", 1), "header is invalid"),
             ("9 layers", _set(image, fixed["n_layers"], "<B", 9), "header is invalid"),
             ("mask past the layers", _set(image, fixed["eval_mask"], "<B", 0b111), "header is invalid"),
             ("no eval layer", _set(image, fixed["eval_mask"], "<B", 0), "eval_layers .* must list"),
             ("frac bits", _set(image, fixed["goodness_frac_bits"], "<B", 11), "goodness_frac_bits 11"),
             ("trailing bytes", image + bytes(8), "8 bytes after its last tensor"),
             ("dense kind", _set(image, c0 + common["kind"], "<B", KINDS.index("dense")), "layer 1 has kind 0"),
             ("flatten kind", _set(image, c1 + common["kind"], "<B", KINDS.index("flatten")), "layer 2 has kind 2"),
             ("unknown kind", _set(image, c1 + common["kind"], "<B", 200), "layer 2 has kind 200"),
             ("maxpool kind", _set(image, c1 + common["kind"], "<B", KINDS.index("maxpool2d")),
              "truncated|kind|record says|chain|shape"),
             ("out shape", _set(image, c0 + common["out_height"], "<H", 6), "layer 1: .* gives .* its record says"),
             ("chain", _set(image, c1 + common["in_channels"], "<H", 11), "the layers' shapes do not chain"),
             ("padding >= kernel", _set(image, k0 + conv["padding"], "<B", 3), "layer 1: conv2d layer: 'padding'"),
             ("act_min", _set(image, k0 + conv["act_min"], "<b", 5), "act_min 5 is not max"),
             ("explicit pad", _set(image, k1 + conv["explicit_pad"], "<B", 0), "explicit_pad 0 disagrees"),
             ("frozen shift", _set(image, k0 + conv["step_weight_shift"], "<i", 3), "frozen block has step shifts"),
             ("step shift", _set(image, k1 + conv["step_bias_shift"], "<i", 63),
              r"step shifts .* must lie in \[0, 62\]"),
             ("step multiplier", _set(image, arrays["layers.1.step_multipliers"][0], "<q", 1 << 40),
              "filter step multipliers must lie in"),
             ("negative step multiplier", _set(image, arrays["layers.1.step_multipliers"][0], "<q", -1),
              "filter step multipliers must lie in"),
             ("requantization shift", _set(image, arrays["layers.0.shift"][0], "<i", 40),
              "invalid quantized multiplier/shift"),
             ("requantization multiplier", _set(image, arrays["layers.1.multiplier"][0], "<i", 5),
              "invalid quantized multiplier/shift"),
             ("head multiplier", _set(image, arrays["head.multiplier"][0], "<i", 5), "invalid quantized multiplier"),
             ("filter -128", _set(image, arrays["layers.0.weight"][0] + 3, "<b", -128), "filter value of -128"),
             ("bias -2^31", _set(image, arrays["layers.0.bias"][0] + 4, "<i", -(1 << 31)), "bias of -2\\^31"),
             ("master", _set(image, arrays["layers.1.weight_master"][0], "<h", 1000),
              "not the rounding of its masters"),
             ("bias master", _set(image, arrays["layers.1.bias_master"][0], "<q",
                                  struct.unpack_from("<q", image, arrays["layers.1.bias_master"][0])[0] + (7 << 8)),
              "not the rounding of its masters"),
             ("class goodness overflow", _set(image, c1 + common["class_shift"], "<i", 30),
              "beyond int32|could reach"),
             ("class goodness shift", _set(image, c0 + common["class_shift"], "<i", -40),
              "invalid quantized multiplier"),
             ("class goodness multiplier", _set(image, c1 + common["class_multiplier"], "<i", 5),
              "invalid quantized multiplier"),
             ("bias master past the clamp",   # rounds to the same int32 bias: 2^32 more, wrapped
              _set(image, arrays["layers.1.bias_master"][0], "<q",
                   struct.unpack_from("<q", image, arrays["layers.1.bias_master"][0])[0] + (1 << 40)),
              "beyond the update's clamp")]
    cases += [(f"truncated at {n}", image[:n], "truncated") for n in (10, bi.LAYERED_FIXED.size + 5, header_end - 1,
                                                                     header_end + 8, len(image) - 1)]
    return cases


def test_every_malformed_image_is_refused_naming_what_is_wrong(padded):
    _, path, _, _ = padded
    _, _, image = _trained_image(path, 1)
    bi.unpack_image(image)
    for name, bad, message in _corruptions(image):
        with pytest.raises(EdgeFFError, match=message):
            bi.unpack_image(bad)
            pytest.fail(name)


def test_a_pooling_layer_must_keep_its_inputs_zero_point(pooled):
    _, path, _, _ = pooled
    _, _, image = _trained_image(path, 1)
    (_, _, _), (c1, _, kind), _ = _records(image)
    assert kind == "maxpool2d"
    zp = image[c1 + bi.LAYERED_LAYER.offsets["out_zero_point"]]
    with pytest.raises(EdgeFFError, match=r"layer 2 \(maxpool2d\) must keep its input's scale and zero point"):
        bi.unpack_image(_set(image, c1 + bi.LAYERED_LAYER.offsets["out_zero_point"], "<B", (zp + 1) % 256))


def test_mlp_images_keep_format_1(small_model):
    int_path, _ = small_model
    tensors, header = load_model(int_path)
    image = bi.pack_image(tensors, header)
    assert image[4] == MODEL_FORMAT
    assert bi.unpack_image(image)[1]["architecture"]["sizes"] == header["architecture"]["sizes"]
