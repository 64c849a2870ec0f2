"""`edgeff export --format board-header`: an int8 model's board image as a C header that EdgeFF's board firmware
compiles in (array `board_model`), refused here when the firmware could not hold or train it.

An FF MLP's image is format 1, the model file's tensors (the board adds master weights as it installs it); a layered
CwC (conv) model's is format 2, its trainer's state on the last --last-k trainable blocks with their masters: both
the image `edgeff board train` would load over the link (board_training.start_image), so a board that boots with it
compiled in trains it to the same bits."""
from dataclasses import dataclass
from pathlib import Path

from edgeff.atomic_write import atomic_write_bytes
from edgeff.c_array import c_header
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import is_layered, load_model
from edgeff.profiler.hw_profile import firmware_profile_names
from edgeff.runtime.int_layered_training import largest_lr_shift
from edgeff.runtime.int_training import LR_SHIFT_RANGE, IntTrainingConfig
from edgeff.runtime.memory_plan import layered_training_plan
from firmware_bridge import messages as m
from firmware_bridge.board_training import load_board_trainer, start_image_of, trainer_image
from firmware_bridge.emulator import DEFAULT_BOARD, target_of

BOARD_MODEL = "board_model"   # the array a board-header defines: the name the board firmware includes
# An image holds no training setting (CONFIGURE brings them, and any lr_shift the image's step shifts allow gives the
# same bytes), but the trainer that makes a format-2 image checks its lr_shift against them: the largest step, the
# smallest lr_shift, is one that any model a board can train at all takes (the default, 22, is too small a step
# for some blocks, e.g. the first of the board conv model)
IMAGE_CONFIG = IntTrainingConfig(lr_shift=LR_SHIFT_RANGE[0])
ALIGN = 8                     # the firmware puts each working buffer on 8 bytes
# the memory plan's buffers (layered_training_plan, method "ff") that the firmware holds in its scratch for a
# format-2 model, by name: ef_cwc_buffers in edgeff/csrc/protocol/cwc_image.h (the input image is the staged record)
CWC_SCRATCH = ("activations ping", "activations pong", "pre-pool output", "class goodness", "dL/dG",
               "filter row gradient sums", "convolution scratch")


def aligned(n: int) -> int:
    """n rounded up to the firmware's buffer alignment."""
    return -(-n // ALIGN) * ALIGN


def staging_slots_bytes(n_inputs: int) -> int:
    """The staging slots' bytes (PROTOCOL.md): each a sample record (label, negative label, the model's input
    bytes) and a bit per byte of it, as board_protocol.c's slots_bytes."""
    record = 2 + n_inputs
    return m.STAGING_SLOTS * (record + (record + 7) // 8)


def scratch_bytes(arch: dict) -> int:
    """Bytes of the firmware's scratch buffer an FF MLP (format 1) needs beside its image, as ef_image_check in
    edgeff/csrc/protocol/board_image.c counts them (tests compare the two): the input and every layer's input and
    output for the positive and the negative pass, the head's input, and the staging slots."""
    sizes = arch["sizes"]
    passes = 2 * sizes[0] + sum(2 * (d_in + d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))
    return passes + sum(sizes[l] for l in arch["head_layers"]) + staging_slots_bytes(sizes[0])


def layered_scratch_bytes(model, trained: list, dsp: bool = True) -> int:
    """Bytes of the firmware's scratch buffer a layered CwC model (format 2, an IntLayeredModel whose 0-based blocks
    `trained` train) needs beside its image, as ef_cwc_image_check in cwc_image.c and install_cwc in
    board_protocol.c count them (tests compare the two): the memory plan's working buffers of one step and the
    head's input, each on 8 bytes, then the staging slots. dsp: the core runs the convolution's DSP path (every
    emulated board's Cortex-M4 or M7, and the Arduino library's Cortex-M4F), whose scratch the plan holds; False:
    the portable path (a host build), which needs none."""
    names = CWC_SCRATCH if dsp else tuple(n for n in CWC_SCRATCH if n != "convolution scratch")
    plan = [b.bytes for b in layered_training_plan(model, trained, "ff") if b.layer == 0 and b.name.startswith(names)]
    return (sum(aligned(n) for n in [*plan, model.head.weight.shape[1]])
            + staging_slots_bytes(model.description.layers[0].n_inputs))


@dataclass(frozen=True)
class BoardModel:
    """What a board firmware compiles in for a model file, and the RAM it takes there."""
    image: bytes              # the board image: the array `board_model`
    installed_bytes: int      # of the firmware's image buffer once installed (format 1: with the masters it adds)
    scratch_bytes: int        # of its scratch buffer: the working buffers of a training step and the staging slots
    format_note: str          # a layered model's image in words; none for an MLP's (its headers keep their bytes)
    layered: bool
    lr_shifts: tuple | None   # a layered model's (smallest, largest) lr_shift its trained blocks take; None: an MLP


def board_model(model_path, last_k: int | None = None) -> BoardModel:
    """The board image of an int8 model file that EdgeFF's board firmware can train, as `edgeff board train
    --last-k last_k` would load it; refused here, with what to do, when it is another kind of file, an FF MLP with
    int16 normalization, or --last-k on an MLP or out of the model's range."""
    from edgeff.runtime.int_model import IntFFModel

    _, header = load_model(model_path)
    kind = (header.get("architecture") or {}).get("kind")
    if kind not in tuple(ModelKind):
        raise EdgeFFError(f"{model_path}: not an EdgeFF model file (architecture kind {kind!r})")
    if kind != ModelKind.INT8:
        raise EdgeFFError(f"{model_path}: the board firmware takes an int8 model; make one with "
                          f"`edgeff quantize {model_path} --out MODEL_INT8`")
    layered = is_layered(header.get("architecture"))
    if not layered and any(layer.norm_bits != 7 for layer in IntFFModel.from_file(model_path).layers):
        raise EdgeFFError(f"{model_path}: EdgeFF's board firmware trains int8-normalized layers only; this "
                          "model has int16 normalization (quantize it with --norm-bits 7)")
    trainer, header = load_board_trainer(model_path, IMAGE_CONFIG, last_k)
    image = start_image_of(model_path, trainer, header)
    if layered:   # format 2's image is installed as sent
        blocks = ", ".join(str(i + 1) for i in trainer.trained)
        return BoardModel(image, len(image), layered_scratch_bytes(trainer.model, trainer.trained),
                          f", format 2 (a layered CwC model, trained blocks {blocks})", True,
                          (LR_SHIFT_RANGE[0], largest_lr_shift(trainer.scales)))
    # format 1: the board adds master weights as it installs the image
    return BoardModel(image, len(trainer_image(trainer, header)), scratch_bytes(header["architecture"]), "", False,
                      None)


def _roomier(model: BoardModel) -> str:
    """The emulated boards whose firmware holds and trains the model, as a hint (empty when none does)."""
    boards = [f"{name} ({t.image_bytes:,} and {t.scratch_bytes:,} bytes)" for name in firmware_profile_names()
              if (t := target_of(name)).image_bytes >= model.installed_bytes
              and t.scratch_bytes >= model.scratch_bytes]
    return f", or export it with --board for {' or '.join(boards)}" if boards else ""


def _check_fits_board_firmware(model_path, model: BoardModel, board: str):
    """Refuse here, with the sizes and what to do, a model the board firmware has no RAM for on `board` (its
    descriptor's image_bytes and scratch_bytes; else the board boots without the model it was built with)."""
    target = target_of(board)
    if model.layered:
        fewer = ("train fewer blocks (--last-k: the image holds each trained block's masters) or a smaller network"
                 + _roomier(model))
        # the working buffers follow the input and the channels; --last-k changes only the row sums
        smaller = "train a network with a smaller input or fewer channels" + _roomier(model)
    else:
        sizes = load_model(model_path)[1]["architecture"]["sizes"]
        fewer = smaller = f"train a smaller network (sizes {sizes}; board-784-64-32 fits {DEFAULT_BOARD})"
    if model.installed_bytes > target.image_bytes:
        raise EdgeFFError(f"{model_path}: with its master weights this model takes {model.installed_bytes:,} bytes "
                          f"of board RAM, but EdgeFF's board firmware on {board} holds models up to "
                          f"{target.image_bytes:,} bytes; {fewer}")
    if model.scratch_bytes > target.scratch_bytes:
        raise EdgeFFError(f"{model_path}: training it takes {model.scratch_bytes:,} bytes of working buffers and "
                          f"staging slots, but EdgeFF's board firmware on {board} has {target.scratch_bytes:,}; "
                          f"{smaller}")


def export_board_header(model_path, out_path, board: str = DEFAULT_BOARD, last_k: int | None = None) -> dict:
    """Write model_path's board image (a layered model's with its last last_k blocks training; None: all) as a C
    header for the firmware on `board` to out_path; returns what was written (for the CLI)."""
    model_path, out_path = Path(model_path), Path(out_path)
    model = board_model(model_path, last_k)
    _check_fits_board_firmware(model_path, model, board)
    what = f"board image{model.format_note} (firmware_bridge/board_image.py)"
    data = c_header(model.image, BOARD_MODEL, f"{model_path.name} as {what}", "board-header").encode()
    atomic_write_bytes(out_path, data)
    target = target_of(board)
    return {"model": str(model_path), "out": str(out_path), "format": "board-header",
            "what": f"C array of the {what}", "bytes": len(data), "board": board,
            "image_bytes": model.installed_bytes, "scratch_bytes": model.scratch_bytes, "lr_shifts": model.lr_shifts,
            "board_image_bytes": target.image_bytes, "board_scratch_bytes": target.scratch_bytes}
