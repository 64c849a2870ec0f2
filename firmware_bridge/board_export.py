"""`edgeff export --format board-header`: an int8 model's board image as a C array that EdgeFF's board
firmware compiles in (array `board_model`), refused here when the firmware could not hold or train it."""
from pathlib import Path

from edgeff.atomic_write import atomic_write_bytes
from edgeff.c_array import c_header
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import load_model
from firmware_bridge import messages as m
from firmware_bridge.board_image import pack_image
from firmware_bridge.emulator import DEFAULT_BOARD, target_of

BOARD_MODEL = "board_model"   # the array a board-header defines: the name the board firmware includes


def installed_image_bytes(model_path, tensors: dict, header: dict) -> int:
    """Bytes of board RAM the model's image takes once installed: a board trains with master weights, so they
    are counted even if the file has none."""
    from edgeff.runtime.int_training import IntTrainingConfig, trainer_from_tensors, trainer_tensors

    trainer = trainer_from_tensors(tensors, header, IntTrainingConfig(), model_path)
    return len(pack_image(trainer_tensors(trainer), header))


def scratch_bytes(arch: dict) -> int:
    """Bytes of the firmware's scratch buffer a model needs beside its image, as ef_image_check in
    edgeff/csrc/protocol/board_image.c counts them (tests compare the two): the input and every layer's
    input and output for the positive and the negative pass, the head's input, and the staging slots, a
    sample record and its bitmap of bytes received each."""
    sizes = arch["sizes"]
    passes = 2 * sizes[0] + sum(2 * (d_in + d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))
    record = 2 + sizes[0]
    return passes + sum(sizes[l] for l in arch["head_layers"]) + m.STAGING_SLOTS * (record + (record + 7) // 8)


def checked_board_model(model_path) -> tuple[dict, dict]:
    """(tensors, header) of an int8 model that EdgeFF's board firmware can train; refused here, with what to
    do, when it is another kind of file or has int16 normalization."""
    from edgeff.runtime.int_model import IntFFModel

    tensors, header = load_model(model_path)
    kind = (header.get("architecture") or {}).get("kind")
    if kind not in tuple(ModelKind):
        raise EdgeFFError(f"{model_path}: not an EdgeFF model file (architecture kind {kind!r})")
    if kind != ModelKind.INT8:
        raise EdgeFFError(f"{model_path}: the board firmware takes an int8 model; make one with "
                          f"`edgeff quantize {model_path} --out MODEL_INT8`")
    if any(layer.norm_bits != 7 for layer in IntFFModel.from_file(model_path).layers):
        raise EdgeFFError(f"{model_path}: EdgeFF's board firmware trains int8-normalized layers only; this "
                          "model has int16 normalization (quantize it with --norm-bits 7)")
    return tensors, header


def _check_fits_board_firmware(model_path, tensors: dict, header: dict, board: str):
    """Refuse here, with the sizes, a model the board firmware has no RAM for on `board` (its descriptor's
    image_bytes; else the firmware build or the board's boot is where it fails)."""
    needed = installed_image_bytes(model_path, tensors, header)
    target = target_of(board)
    smaller = (f"train a smaller network (sizes {header['architecture']['sizes']}; board-784-64-32 fits "
               f"{DEFAULT_BOARD})")
    if needed > target.image_bytes:
        raise EdgeFFError(f"{model_path}: with its master weights this model takes {needed:,} bytes of board RAM, "
                          f"but EdgeFF's board firmware on {board} holds models up to {target.image_bytes:,} "
                          f"bytes; {smaller}")
    scratch = scratch_bytes(header["architecture"])
    if scratch > target.scratch_bytes:
        raise EdgeFFError(f"{model_path}: training it takes {scratch:,} bytes of working buffers and staging slots, "
                          f"but EdgeFF's board firmware on {board} has {target.scratch_bytes:,}; {smaller}")


def export_board_header(model_path, out_path, board: str = DEFAULT_BOARD) -> dict:
    """Write model_path's board image as a C header for the firmware on `board` to out_path; returns what was
    written (for the CLI)."""
    model_path, out_path = Path(model_path), Path(out_path)
    tensors, header = checked_board_model(model_path)
    _check_fits_board_firmware(model_path, tensors, header, board)
    what = "board image (firmware_bridge/board_image.py)"
    data = c_header(pack_image(tensors, header), BOARD_MODEL, f"{model_path.name} as {what}", "board-header").encode()
    atomic_write_bytes(out_path, data)
    return {"model": str(model_path), "out": str(out_path), "format": "board-header", "what": f"C array of the {what}",
            "bytes": len(data)}
