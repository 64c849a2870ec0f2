"""Measured memory peak of integer (NumPy) host training, next to which the profiler's analytic model is
checked: tracemalloc, which NumPy reports every array allocation to; the peak covers building the trainer
(model copy, master weights) and the training steps. The torch (float32) measurement is the trainer's:
edgeff/train/torch_memory.py.
"""
import tracemalloc

import numpy as np


def measure_int_training_peak(model, config, images: np.ndarray, labels: np.ndarray, batch: int,
                              steps: int = 2) -> int:
    """Peak bytes (tracemalloc) of building an IntTrainer on a copy of `model` and running `steps` steps."""
    import copy

    from edgeff.runtime.int_training import IntTrainer

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        trainer = IntTrainer(copy.deepcopy(model), config)
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            trainer.step(images[sl], labels[sl])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
