"""What a deployed camera front end does to the images a model was trained on (the drifting-sensor scenario of
on-device learning, firmware_bridge/scenarios.py). Each shift maps uint8 images (N, side*side) to uint8 images
of the same shape, deterministically. `write_shifted_copy` writes a dataset directory as the deployed camera
would deliver it, so any command's --data-dir can read the camera's view.

    exposure: a dimmer, lower-contrast exposure with a raised black level (gain 0.6, offset +60): what an
              aging sensor, a changed auto-exposure or a dirty lens cover does to every pixel
    mount:    the camera mounted 12 degrees off and a noisier sensor (Gaussian read noise, sigma 20 of 255):
              a geometric and a noise change at once, as a re-installed or cheaper camera brings
"""
from pathlib import Path

import numpy as np

from edgeff.data import cifar10
from edgeff.data.datasets import SPLIT_FILES, find_file
from edgeff.data.idx import read_idx, write_idx
from edgeff.errors import EdgeFFError


def gain_offset(images: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(np.rint(images.astype(np.float32) * gain + offset), 0, 255).astype(np.uint8)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Square images turned about their centre by bilinear interpolation; pixels from outside are 0."""
    n, pixels = images.shape
    side = int(round(pixels ** 0.5))
    if side * side != pixels:
        raise EdgeFFError(f"rotation needs square images; these have {pixels} pixels")
    c = (side - 1) / 2
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) - c
    t = np.deg2rad(degrees)
    # where each output pixel comes from: the inverse rotation of its coordinates
    sx, sy = np.cos(t) * x + np.sin(t) * y + c, -np.sin(t) * x + np.cos(t) * y + c
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(images.reshape(n, side, side).astype(np.float32), ((0, 0), (1, 1), (1, 1)))

    def at(yy, xx):   # out-of-range sources read the zero border
        return padded[:, np.clip(yy, -1, side) + 1, np.clip(xx, -1, side) + 1]

    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
           + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(n, pixels)


def add_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


SHIFTS = {
    "exposure": lambda images, seed: gain_offset(images, 0.6, 60),
    "mount": lambda images, seed: add_noise(rotate(images, 12), 20, seed),
}


def shifted(images: np.ndarray, shift: str, seed: int = 0) -> np.ndarray:
    if shift not in SHIFTS:
        raise EdgeFFError(f"unknown sensor shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    return SHIFTS[shift](images, seed)


def write_shifted_copy(source_dir, out_dir, shift: str, seed: int = 0) -> Path:
    """Write the MNIST-format IDX dataset in `source_dir` to `out_dir` (raw IDX, the same file names) with every
    image `shift`ed: the training file's with noise seed `seed`, the test file's with `seed` + 1 (the drift
    scenario's seeds: train and test draw different noise), the labels as they are. The training file keeps its
    length and order, so a model file's recorded validation split picks the same images, shifted."""
    if shift not in SHIFTS:
        raise EdgeFFError(f"unknown sensor shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    source, out = Path(source_dir), Path(out_dir)
    if cifar10.is_cifar10_dir(source):
        raise EdgeFFError(f"{source}: a shifted copy is written of an MNIST-format IDX directory, not CIFAR-10's "
                          "colour batches")
    if out.resolve() == source.resolve():
        raise EdgeFFError(f"{out}: the shifted copy would overwrite its source; give another directory")
    out.mkdir(parents=True, exist_ok=True)
    for split, noise_seed in (("train", seed), ("test", seed + 1)):
        image_stem, label_stem = SPLIT_FILES[split]
        images = read_idx(find_file(source, image_stem), expect_ndim=3)
        if images.dtype != np.uint8:
            raise EdgeFFError(f"{source}: {image_stem} must hold uint8 images (got {images.dtype})")
        moved = shifted(images.reshape(len(images), -1), shift, noise_seed).reshape(images.shape)
        write_idx(out / image_stem, moved, compress=False)
        write_idx(out / label_stem, read_idx(find_file(source, label_stem), expect_ndim=1), compress=False)
    return out
