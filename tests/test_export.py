"""Exports computed by their own runtimes equal EdgeFF: ONNX float against torch, ONNX int8 and TFLite int8
against the integer runtime bit for bit (kernel by kernel on random cases and worst-case bounds, then
whole models), the C header compiled by a real compiler, and the CLI's export/verify with bad input."""
import json
import re
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from edgeff.c_array import c_header, tflite_bytes_from_c_header
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.export import onnx_int8, tflite_int8, tflm
from edgeff.export.provenance import KEY, source_record
from edgeff.export.tflm import run_tflm
from edgeff.export.verify import run_tflite, verify
from edgeff.export.write import export_model
from edgeff.model_file import load_model, save_model
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.l2_normalization import inv_sqrt_quantized_multiplier, l2_normalization
from edgeff.runtime.requantize import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier
from firmware_bridge.board_export import export_board_header
from tests.conftest import make_images, run_cli

N_RANDOM = 100_000


def _session(g: onnx_int8.IntegerGraph, outputs):
    for name, tensor, shape in outputs:
        g.output(name, tensor, TensorProto.INT64, shape)
    return ort.InferenceSession(g.model("test").SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_onnx_requantize_equals_runtime(rounding):
    """MultiplyByQuantizedMultiplier as ONNX integer ops, on random int32 values, multipliers and shifts
    plus INT32_MIN/MAX, the smallest and largest multipliers and the extreme shifts."""
    rng = np.random.default_rng(5)
    x = rng.integers(INT32_MIN, INT32_MAX, N_RANDOM, endpoint=True)
    m = rng.integers(1 << 30, INT32_MAX, N_RANDOM, endpoint=True)
    shift = rng.integers(-31, 30, N_RANDOM, endpoint=True)
    shift[shift > 0] = rng.integers(0, 4, (shift > 0).sum())   # left shifts of large values wrap: keep some small
    edges = np.array([[INT32_MIN, 1 << 30, -31], [INT32_MAX, INT32_MAX, -31], [INT32_MIN, INT32_MAX, 0],
                      [INT32_MAX, 1 << 30, 0], [-1, INT32_MAX, -1], [1, 1 << 30, 30], [-(1 << 20), INT32_MAX, 3]])
    x, m, shift = (np.concatenate([a, edges[:, i]]).astype(np.int64) for i, a in enumerate((x, m, shift)))
    g = onnx_int8.IntegerGraph("requantize")
    ins = [g.input(n, TensorProto.INT64, ["N"]) for n in ("x", "m", "shift")]
    sess = _session(g, [("y", g.requantize(*ins, rounding), ["N"])])
    got = sess.run(None, {"x": x, "m": m, "shift": shift})[0]
    assert np.array_equal(got, multiply_by_quantized_multiplier(x, m, shift, rounding))


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("zero_point", [-128, 0, 5])
def test_onnx_l2_normalization_equals_runtime(zero_point, rounding):
    """TFLite's L2 normalization (inverse sqrt included) as ONNX integer ops: 110,000+ random values, plus
    all-equal rows, zero rows and one-hot rows."""
    rng = np.random.default_rng(6)
    q = np.concatenate([rng.integers(-128, 128, (1500, 74)), rng.integers(zero_point, 128, (100, 74)),
                        np.full((2, 74), -128), np.full((2, 74), 127), np.full((2, 74), zero_point),
                        np.where(np.arange(74) == 3, 127, zero_point)[None].repeat(2, 0)]).astype(np.int64)
    g = onnx_int8.IntegerGraph("l2")
    a = g.input("a", TensorProto.INT64, ["N", 74])
    sess = _session(g, [("n", g.l2_normalize(a, zero_point, rounding), ["N", 74])])
    assert np.array_equal(sess.run(None, {"a": q})[0], l2_normalization(q.astype(np.int8), zero_point,
                                                                         rounding=rounding))


def test_onnx_inverse_sqrt_equals_runtime():
    """Every sum 0..70,000, random int32 sums, and 2^k - 1, 2^k, 2^k + 1."""
    rng = np.random.default_rng(7)
    powers = np.array([(1 << k) + d for k in range(1, 31) for d in (-1, 0, 1)])
    acc = np.concatenate([np.arange(70_001), rng.integers(0, INT32_MAX, 50_000), powers])[:, None]
    g = onnx_int8.IntegerGraph("inv_sqrt")
    a = g.input("acc", TensorProto.INT64, ["N", 1])
    mult, shift = g.inv_sqrt(a)
    got_m, got_s = _session(g, [("m", mult, ["N", 1]), ("s", shift, ["N", 1])]).run(None, {"acc": acc})
    want_m, want_s = inv_sqrt_quantized_multiplier(acc.ravel())
    assert np.array_equal(got_m.ravel(), want_m) and np.array_equal(got_s.ravel(), want_s)


@pytest.fixture(scope="module")
def exportable(float_model, tmp_path_factory):
    """The tiny model quantized with each rounding (int8 normalization): {rounding: path}, data dir."""
    float_path, data = float_model
    root = tmp_path_factory.mktemp("export")
    paths = {}
    for rounding in ("double", "single"):
        paths[rounding] = root / f"int8-{rounding}.safetensors"
        res = run_cli("quantize", float_path, "--out", paths[rounding], "--data-dir", data, "--rounding", rounding,
                      "--calibration-samples", "300")
        assert res.returncode == 0, res.stderr
    return paths, data


def _test_images(data):
    return load_dataset(data, val_size=100).test


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_onnx_int8_model_is_bit_exact(exportable, tmp_path, rounding):
    paths, data = exportable
    out = tmp_path / "m.onnx"
    export_model(paths[rounding], "onnx", out)
    proto = onnx.load(out)
    assert proto.ir_version <= 13 and {o.name for o in proto.graph.output} == {"goodness", "logits"}
    test = _test_images(data)
    result = verify(paths[rounding], out, test.images, test.labels)
    row = result["rows"][0]
    assert row["goodness_differing"] == 0 and row["logits_differing"] == 0
    assert row["multi_pass_agreement"] == 1.0 and row["one_pass_agreement"] == 1.0
    # dynamic batch: one image at a time gives the same rows
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    single = sess.run(None, {"images": test.images[3:4]})
    model = IntFFModel.from_file(paths[rounding])
    assert np.array_equal(single[0], model.raw_label_goodness(test.images[3:4]))


def test_onnx_float_model_matches_torch(float_model, tmp_path):
    float_path, data = float_model
    out = tmp_path / "f.onnx"
    export_model(float_path, "onnx", out)
    assert onnx.load(out).ir_version <= 13
    test = _test_images(data)
    row = verify(float_path, out, test.images, test.labels)["rows"][0]
    assert row["goodness_max_rel_diff"] <= 1e-5 and row["logits_max_rel_diff"] <= 1e-5
    assert row["multi_pass_agreement"] == 1.0 and row["one_pass_agreement"] == 1.0


def test_tflite_conv_form_is_bit_exact_under_the_reference_kernels(exportable, tmp_path):
    """LiteRT's reference CONV_2D requantizes as TFLite Micro does: every output equal."""
    paths, data = exportable
    out = tmp_path / "m.tflite"
    export_model(paths["double"], "tflite", out, layer_op="conv_2d")
    test = _test_images(data)
    rows = {r["runtime"]: r for r in verify(paths["double"], out, test.images, test.labels)["rows"]}
    ref = rows["LiteRT reference kernels"]
    assert ref["goodness_differing"] == 0 and ref["logits_differing"] == 0
    xnnpack = rows["LiteRT default (XNNPACK)"]  # float32 requantization: close, not equal
    assert xnnpack["logits_max_abs_diff"] <= 4 and xnnpack["multi_pass_agreement"] >= 0.95


def test_tflite_fully_connected_goodness_is_bit_exact(exportable, tmp_path):
    """FULLY_CONNECTED under LiteRT's optimized integer kernels: every goodness equal (ReLU outputs are never
    negative, where its rounding differs); the head's logits at most 1 apart (negative ties round up)."""
    paths, data = exportable
    out = tmp_path / "m.tflite"
    export_model(paths["double"], "tflite", out)
    test = _test_images(data)
    rows = {r["runtime"]: r for r in verify(paths["double"], out, test.images, test.labels)["rows"]}
    integer = rows["LiteRT optimized integer kernels"]
    assert integer["goodness_differing"] == 0 and integer["logits_max_abs_diff"] <= 1


@pytest.mark.parametrize("layer_op", tflite_int8.LAYER_OPS)
def test_tflite_random_model_is_bit_exact_in_tflm(exportable, layer_op):
    """Whole-graph random cases in TensorFlow Lite Micro's own interpreter, both layer forms: random int8 weights
    and biases in the tiny model's formats, 2,000 noise images (40,000 labelled rows through both layers), every
    goodness and logit equal to the integer runtime's. The conv form also under LiteRT's reference kernels, at
    the batch size of the whole set (the stored batch-1 shapes resize)."""
    paths, _ = exportable
    tensors, header = load_model(paths["double"])
    rng = np.random.default_rng(8)
    for name, t in tensors.items():
        if name.endswith(".weight"):
            tensors[name] = rng.integers(-127, 128, t.shape).astype(np.int8)
        elif name.endswith(".bias"):
            tensors[name] = rng.integers(-3000, 3000, t.shape).astype(t.dtype)
    noise = rng.integers(0, 256, (2000, 784)).astype(np.uint8)
    noise[:2] = np.array([[0], [255]])   # the input range's ends
    # and the trained model on 2,000 images of the kind it was trained on
    like_training = make_images(rng.integers(0, 10, 2000), rng).reshape(2000, -1)
    for model, images in ((IntFFModel.from_tensors(tensors, header), noise),
                          (IntFFModel.from_file(paths["double"]), like_training)):
        content = tflite_int8.build(model, layer_op=layer_op)
        want_goodness, want_logits = model.raw_label_goodness(images), model.head_logits(images)
        pixels = (images.astype(np.int16) - 128).astype(np.int8)
        runs = [run_tflm(content, pixels)]
        if layer_op == "conv_2d":
            runs.append(run_tflite(content, pixels, "BUILTIN_REF"))
        for out in runs:
            assert np.array_equal(out["goodness"], want_goodness)
            assert np.array_equal(out["logits"], want_logits)


def test_c_header_carries_what_a_tflm_board_needs(exportable, tmp_path):
    """The arena edgeff export prints is the smallest TFLM allocates the model in (16 bytes less fails); the C++
    in the header registers exactly the model's ops; the header's goodness constants turn TFLM's outputs into
    EdgeFF's multi-pass predictions."""
    paths, data = exportable
    written = export_model(paths["double"], "c-header", tmp_path / "model.h")
    content = tflite_bytes_from_c_header(tmp_path / "model.h")
    arena = written["tflm_arena_bytes"]
    tflm.interpreter(content, arena)
    with pytest.raises(EdgeFFError, match="TensorFlow Lite Micro cannot run this model"):
        tflm.interpreter(content, arena - tflm.ARENA_ALIGNMENT)
    text = (tmp_path / "model.h").read_text()
    registered = [tflm.RESOLVER_METHODS[op] for op in written["tflm_ops"]]
    assert sorted(re.findall(r"resolver\.(Add\w+)\(\);", text)) == sorted(registered)
    assert f"MicroMutableOpResolver<{len(registered)}>" in text and f"kArenaBytes = {arena};" in text
    assert "TRANSPOSE" not in written["tflm_ops"] and "SUM" not in written["tflm_ops"]   # what TFLM lacks for int32

    def constant(name):
        return np.array([int(v) for v in re.search(rf"model_{name}\[\d+\] = \{{([^}}]*)\}}", text)[1].split(",")])

    model, test = IntFFModel.from_file(paths["double"]), _test_images(data)
    goodness = run_tflm(content, (test.images.astype(np.int16) - 128).astype(np.int8))["goodness"]
    scores = sum(multiply_by_quantized_multiplier(goodness[l], m, s) for l, m, s in
                 zip(constant("eval_layers"), constant("goodness_multiplier")[constant("eval_layers")],
                     constant("goodness_shift")[constant("eval_layers")], strict=True))
    assert np.array_equal(scores.argmax(axis=1), model.multi_pass_scores(test.images).argmax(axis=1))


def test_c_header_compiles_to_the_model_bytes(exportable, tmp_path):
    """The header holds the very flatbuffer `--format tflite` writes (which verify runs), 16-byte aligned."""
    paths, _ = exportable
    header = tmp_path / "board-model.h"
    export_model(paths["double"], "c-header", header)
    export_model(paths["double"], "tflite", tmp_path / "m.tflite")
    model_bytes = (tmp_path / "m.tflite").read_bytes()
    (tmp_path / "dump.c").write_text(
        '#include <stdio.h>\n#include "board-model.h"\n'
        "int main(void) {\n"
        "    if ((unsigned long)board_model % 16) return 3;\n"
        "    fwrite(board_model, 1, board_model_len, stdout);\n"
        "    return 0;\n}\n")
    exe = tmp_path / "dump"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-o", exe, tmp_path / "dump.c"], check=True, cwd=tmp_path)
    assert subprocess.run([exe], capture_output=True, check=True).stdout == model_bytes
    assert tflite_bytes_from_c_header(header) == model_bytes
    assert c_header(b"\x01", "9lives.bin", "x").count("_9lives_bin_len = 1;") == 1   # a valid C identifier



def test_refuses_what_it_cannot_express(exportable, int_model, tmp_path):
    paths, _ = exportable
    _, int_path, _ = int_model
    header = load_model(int_path)[1]
    if header["quantization"]["layers"][0].get("norm_bits", 7) == 15:
        with pytest.raises(EdgeFFError, match="layer 1 has int16 normalized inputs"):
            export_model(int_path, "onnx", tmp_path / "x.onnx")
        # TFLM's L2_NORMALIZATION has no int16 output: the 16x8 form is refused with that reason
        with pytest.raises(EdgeFFError, match="L2_NORMALIZATION writes int8 or float32 only"):
            export_model(int_path, "tflite", tmp_path / "x.tflite")
    # single rounding: no TFLite runtime here computes it (TFLM's default build rounds twice)
    with pytest.raises(EdgeFFError, match="single rounding is not supported.*--rounding double"):
        export_model(paths["single"], "c-header", tmp_path / "x.h")
    assert not (tmp_path / "x.h").exists()
    # a multiplier no float32 scale gives (as an older quantizer wrote them): refused by name
    tensors, header = load_model(paths["double"])
    tensors["layers.0.multiplier"] = tensors["layers.0.multiplier"] ^ 1
    bad = tmp_path / "old.safetensors"
    save_model(bad, tensors, header)
    with pytest.raises(EdgeFFError, match="layers.0, channel 0: its requantization multiplier"):
        export_model(bad, "tflite", tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()


def test_cli_export_and_verify(exportable, float_model, tmp_path):
    paths, data = exportable
    out = tmp_path / "m.tflite"
    res = run_cli("export", paths["double"], "--format", "tflite", "--out", out, "--layer-op", "conv_2d")
    assert res.returncode == 0, res.stderr
    res = run_cli("verify", paths["double"], out, "--data-dir", data, "--images", "50")
    assert res.returncode == 0, res.stderr
    assert "| LiteRT reference kernels | 0 | 0 of 1,000 | 0 | 0 of 500 |" in res.stdout
    float_path, _ = float_model
    for args, message in [(("export", float_path, "--format", "tflite", "--out", tmp_path / "f.tflite"),
                           "tflite export takes an int8 model"),
                          (("verify", paths["double"], tmp_path / "missing.onnx", "--data-dir", data), "missing.onnx"),
                          (("verify", paths["double"], paths["double"], "--data-dir", data), "unknown export format")]:
        res = run_cli(*args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_verify_fails_when_an_export_computes_other_values(exportable, tmp_path):
    """An export recording the right source but computing other values (one head bias changed): verify prints
    the FAIL verdict naming every runtime that missed its policy and exits 1."""
    paths, data = exportable
    tensors, header = load_model(paths["double"])
    tensors["head.bias"] = tensors["head.bias"] + np.int32(5000)
    wrong = tflite_int8.build(IntFFModel.from_tensors(tensors, header),
                              metadata={KEY: source_record(paths["double"], "ff-mlp-int8")})
    (tmp_path / "wrong.tflite").write_bytes(wrong)
    res = run_cli("verify", paths["double"], tmp_path / "wrong.tflite", "--data-dir", data, "--images", "50")
    assert res.returncode == 1, res.stderr
    verdict = res.stdout.strip().splitlines()[-1]
    assert verdict.startswith("verify: FAIL") and "TensorFlow Lite Micro" in verdict, verdict
    res = run_cli("verify", paths["double"], tmp_path / "wrong.tflite", "--data-dir", data, "--images", "50", "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["verdict"] == "fail"


def test_verify_refuses_another_models_export(exportable, float_model, tmp_path):
    """Exports checked against a model they did not come from are refused naming both: another int8 model of the
    same architecture (its recorded source), the float model (int8 export), and for ONNX too."""
    paths, data = exportable
    float_path, _ = float_model
    for fmt, name in (("tflite", "m.tflite"), ("onnx", "m.onnx"), ("c-header", "m.h")):
        export_model(paths["double"], fmt, tmp_path / name)
        res = run_cli("verify", paths["single"], tmp_path / name, "--data-dir", data, "--images", "20")
        assert res.returncode == 2 and "was exported from another model (int8-double.safetensors" in res.stderr, \
            res.stderr
        assert str(paths["single"]) in res.stderr and "Traceback" not in res.stderr
        res = run_cli("verify", float_path, tmp_path / name, "--data-dir", data, "--images", "20")
        assert res.returncode == 2 and "is a int8 export with inputs of shape [784], but" in res.stderr, res.stderr
        assert "is a float model" in res.stderr


def test_verify_reads_c_headers_and_refuses_others(exportable, tmp_path):
    paths, data = exportable
    export_model(paths["double"], "c-header", tmp_path / "m.h")
    res = run_cli("verify", paths["double"], tmp_path / "m.h", "--data-dir", data, "--images", "30")
    assert res.returncode == 0 and "| TensorFlow Lite Micro | 0 | 0 of 600 | 0 | 0 of 300 |" in res.stdout, res.stderr
    export_board_header(paths["double"], tmp_path / "board.h")
    text = (tmp_path / "m.h").read_text()
    (tmp_path / "short.h").write_text(text.replace("0x", "0X", 1).replace("0X", "", 1))   # one byte gone
    for bad, message in (("board.h", "not a TFLite model"), ("short.h", "the header is damaged")):
        res = run_cli("verify", paths["double"], tmp_path / bad, "--data-dir", data, "--images", "5")
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
