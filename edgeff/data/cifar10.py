"""The CIFAR-10 binary format (cifar-10-batches-bin), the other image format users bring besides IDX.

Each batch file is a run of 3,073-byte records: one label byte (0..9), then the 32x32 image as three
1,024-byte planes (red, green, blue), row-major. The training split is data_batch_1.bin .. data_batch_5.bin,
the test split test_batch.bin. Images come back flattened channel-major, (N, 3 * 32 * 32) uint8, which is
the (3, 32, 32) layout a conv model's input_shape names.
"""
from pathlib import Path

import numpy as np

from edgeff.errors import EdgeFFError

SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + int(np.prod(SHAPE))
N_CLASSES = 10
SPLIT_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}


def is_cifar10_dir(directory: Path) -> bool:
    return (Path(directory) / SPLIT_FILES["test"][0]).is_file()


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3072) uint8, labels (N,) uint8) of one batch file, refused by name when it is not one."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise EdgeFFError(f"{path}: cannot read the CIFAR-10 batch ({exc.strerror})") from None
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise EdgeFFError(f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records "
                          f"({RECORD_BYTES} bytes each: a label byte and a 3x32x32 image); the file is "
                          "truncated or not from the binary version (cifar-10-binary.tar.gz)")
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].copy()
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise EdgeFFError(f"{path}: record {bad[0]} has label {labels[bad[0]]}, CIFAR-10 labels are 0..9; "
                          "the file is corrupt (CIFAR-100's binary files have two label bytes)")
    return records[:, 1:].copy(), labels


def read_split(directory, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's images and labels from a cifar-10-batches-bin directory (every batch of the split)."""
    directory = Path(directory)
    missing = [name for name in SPLIT_FILES[split] if not (directory / name).is_file()]
    if missing:
        raise EdgeFFError(f"{directory}: the CIFAR-10 {split} split needs {', '.join(missing)}; point --data-dir "
                          "at the unpacked cifar-10-batches-bin directory")
    parts = [read_batch(directory / name) for name in SPLIT_FILES[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
