"""The board image of a layered CwC model in C (edgeff/csrc/protocol/cwc_image.c, through host_cwc_image.c built for
this host): it accepts exactly the images unpack_image accepts (Python's images, their corruptions, and random byte
changes, each judged by both), refuses an image or working buffers over the caller's RAM with the bytes needed,
sizes its working buffers as the memory plan does, and the model it binds decides, infers and trains bit for bit
as the NumPy runtime (IntLayeredModel, IntLayeredTrainer); the image read back after training unpacks, through
merge_header, into the trainer's tensors."""
import ctypes
import random
import shutil
import subprocess

import numpy as np
import pytest

from edgeff.csrc import KERNELS, PROTOCOL
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig
from edgeff.runtime.memory_plan import layered_training_plan
from firmware_bridge import board_image as bi
from firmware_bridge import messages as m
from tests.test_board_image_layered import _corruptions, padded, pooled  # noqa: F401 (module fixtures, by name)
from tests.test_cwc_firmware import _samples

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

OK, BAD_MODEL, NO_MEMORY = 0, m.ErrorCode.BAD_MODEL, m.ErrorCode.NO_MEMORY
LIMIT = 512 * 1024
CONFIG = IntTrainingConfig(lr_shift=8, rounding="stochastic", seed=3)
BUFFERS = ("activations ping", "activations pong", "pre-pool output", "class goodness", "dL/dG",
           "filter row gradient sums", "convolution scratch", "head input")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("cwc-image") / "host_cwc_image.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS}",
                    f"-I{PROTOCOL}", *map(str, sorted(KERNELS.glob("*.c"))), str(PROTOCOL / "cwc_image.c"),
                    str(PROTOCOL / "host_cwc_image.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    u32p = ctypes.POINTER(ctypes.c_uint32)
    lib.ef_host_cwc_load.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                                     ctypes.POINTER(ctypes.c_char_p), u32p, u32p]
    lib.ef_host_cwc_configure.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_uint32]
    lib.ef_host_cwc_infer.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.ef_host_cwc_classify.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.ef_host_cwc_train.argtypes = [ctypes.c_char_p, ctypes.c_int32]
    lib.ef_host_cwc_read.argtypes = [ctypes.c_char_p]
    lib.ef_host_cwc_read.restype = ctypes.c_uint32
    return lib


def _load(lib, image: bytes, image_capacity=LIMIT, scratch_capacity=LIMIT):
    """(code, message, bytes needed, {buffer: bytes}) of the C check of image."""
    why, detail, buffers = ctypes.c_char_p(), ctypes.c_uint32(), (ctypes.c_uint32 * len(BUFFERS))()
    code = lib.ef_host_cwc_load(image, len(image), image_capacity, scratch_capacity, ctypes.byref(why),
                                ctypes.byref(detail), buffers)
    assert code >= 0
    return code, why.value.decode(), detail.value, dict(zip(BUFFERS, buffers, strict=True))


def _python_accepts(image: bytes) -> bool:
    try:
        bi.unpack_image(image)
    except EdgeFFError:
        return False
    return True


def _image(path, last_k):
    trainer = load_layered_trainer(path, CONFIG, last_k)
    return trainer, bi.pack_image(trainer.tensors(), load_model(path)[1])


@pytest.mark.parametrize("case", ["padded", "pooled"])
@pytest.mark.parametrize("last_k", [None, 1])
def test_the_c_check_takes_pythons_images_and_sizes_the_plans_buffers(lib, case, last_k, request):
    _, path, _, _ = request.getfixturevalue(case)
    trainer, image = _image(path, last_k)
    code, why, _, buffers = _load(lib, image)
    assert code == OK, why
    plan = layered_training_plan(trainer.model, trainer.trained, "ff")
    planned = {name: sum(b.bytes for b in plan if b.layer == 0 and b.name.startswith(name)) for name in BUFFERS}
    for name in BUFFERS[:6]:
        assert buffers[name] == planned[name], name
    assert buffers["convolution scratch"] == 0   # the host's portable kernel; the plan's is the Cortex-M4 DSP path's
    assert buffers["head input"] == trainer.model.head.weight.shape[1]
    tensors, header = load_model(path)   # a quantized model: no trained block
    assert _load(lib, bi.pack_image(tensors, header))[0] == OK


def test_the_c_check_refuses_each_corruption_python_refuses(lib, request):
    _, path, _, _ = request.getfixturevalue("padded")
    _, image = _image(path, 1)
    for name, bad, _ in _corruptions(image):
        code, why, _, _ = _load(lib, bad)
        assert code == BAD_MODEL and why, name


@pytest.mark.parametrize("case", ["padded", "pooled"])
def test_the_c_check_accepts_exactly_what_python_accepts(lib, case, request):
    """Random changes of one to three bytes (most in the header and records, where nearly every value means
    something; some in the arrays): both sides judge each the same."""
    _, path, _, _ = request.getfixturevalue(case)
    _, image = _image(path, None)
    rng = random.Random(7)
    header_end = bi.array_offsets(image)["layers.0.weight"][0]
    both = {True: 0, False: 0}
    for _ in range(600):
        bad = bytearray(image)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(header_end) if rng.random() < 0.8 else rng.randrange(len(image))
            bad[at] = rng.choice([0, 1, 2, 3, 0x7F, 0x80, 0xFF, rng.randrange(256), bad[at] ^ 1])
        accepts = _python_accepts(bytes(bad))
        code, why, _, _ = _load(lib, bytes(bad))
        assert (code == OK) == accepts, (why, [(i, image[i], bad[i]) for i in range(len(image)) if image[i] != bad[i]])
        both[accepts] += 1
    assert both[True] > 50 and both[False] > 50, both   # the changes exercise both answers


def test_an_image_or_buffers_over_the_boards_ram_are_refused_with_the_bytes_needed(lib, request):
    _, path, _, _ = request.getfixturevalue("pooled")
    _, image = _image(path, 1)
    scratch = sum(-(-b // 8) * 8 for b in _load(lib, image)[3].values())
    need = len(image) + scratch
    assert _load(lib, image, len(image), scratch)[0] == OK
    for capacities in ((len(image) - 1, scratch), (len(image), scratch - 1)):
        code, why, detail, _ = _load(lib, image, *capacities)
        assert (code, detail) == (NO_MEMORY, need) and "more RAM" in why


@pytest.mark.parametrize("case, last_k, rounding", [("padded", None, "stochastic"), ("padded", 1, "nearest"),
                                                     ("pooled", None, "stochastic"), ("pooled", 1, "stochastic")])
def test_the_bound_model_decides_infers_and_trains_as_the_runtime(lib, case, last_k, rounding, request):
    _, path, data, _ = request.getfixturevalue(case)
    config = IntTrainingConfig(lr_shift=8, rounding=rounding, seed=3)
    trainer = load_layered_trainer(path, config, last_k)
    base = load_model(path)[1]
    image = bi.pack_image(trainer.tensors(), base)
    assert _load(lib, image)[0] == OK
    lib.ef_host_cwc_configure(config.lr_shift, int(rounding == "stochastic"), config.seed)
    test_images, images, labels = _samples(data, 6, 8)
    n = trainer.model.n_classes

    def c_infer(model):
        scores, logits, one_pass = np.zeros(n, np.int64), np.zeros(n, np.int8), ctypes.c_int32()
        for x, want, want_logits in zip(test_images, model.multi_pass_scores(test_images),
                                        model.head_logits(test_images), strict=True):
            decision = lib.ef_host_cwc_infer(x.tobytes(), scores.ctypes.data, logits.ctypes.data,
                                             ctypes.byref(one_pass))
            assert np.array_equal(scores, want) and decision == int(want.argmax())
            assert np.array_equal(logits, want_logits) and one_pass.value == int(want_logits.argmax())
            assert lib.ef_host_cwc_classify(x.tobytes(), scores.ctypes.data) == decision

    c_infer(trainer.model)
    before = {k: v.copy() for k, v in trainer.tensors().items()}
    for x, y in zip(images, labels, strict=True):
        correct = lib.ef_host_cwc_train(x.tobytes(), int(y))
        assert correct == trainer.step(x[None], np.array([y]))["correct"]
    out = ctypes.create_string_buffer(len(image))
    assert lib.ef_host_cwc_read(out) == len(image)
    tensors, image_header = bi.unpack_image(out.raw)
    merged = bi.merge_header(base, image_header)
    assert merged["int_training"]["step"] == trainer.step_count == len(labels)
    want = trainer.tensors()
    assert set(tensors) == set(want)
    assert any(not np.array_equal(want[k], before[k]) for k in want)   # the steps moved the state compared
    for name, value in want.items():
        assert np.array_equal(tensors[name], value), name
    c_infer(IntLayeredModel.from_tensors(tensors, merged))   # the trained model, in C and NumPy alike
