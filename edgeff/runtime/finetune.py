"""Continue training an int8 model with the integer-only FF rule over a dataset, epoch by epoch, exactly as a
board would (`edgeff finetune`); what the board does sample by sample over the serial link, here in-process.
The trainer is an MLP's (edgeff.runtime.int_training.IntTrainer) or a layered CwC model's
(edgeff.runtime.int_layered_training.IntLayeredTrainer): each names its training-set metric (TRAIN_METRIC)
and what an epoch's record adds (epoch_state)."""
import numpy as np

from edgeff.runtime.int_model import evaluate_int


def finetune(trainer, train_split, val_split, epochs: int, samples: int, batch_size: int, seed: int, eval_layers,
             on_samples=lambda n: None, on_epoch=lambda history: None) -> list:
    """Train `trainer` (an IntTrainer or IntLayeredTrainer) for `epochs` passes over `samples` training samples in
    a seeded order; after each epoch score the validation split (multi-pass) and call on_epoch(history so far),
    e.g. to save the model. on_samples(n) is called as samples are applied (progress). Returns the per-epoch history."""
    history = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train_split))[:samples]
        correct = 0
        for start in range(0, samples, batch_size):
            idx = order[start:start + batch_size]
            correct += trainer.step(train_split.images[idx], train_split.labels[idx])["correct"]
            on_samples(len(idx))
        val = evaluate_int(trainer.model, val_split.images, val_split.labels, eval_layers, "multi")
        history.append({"epoch": epoch + 1, "samples": (epoch + 1) * samples, "steps_total": trainer.step_count,
                        trainer.TRAIN_METRIC: correct / samples, "val_multi_pass": val["multi_pass"],
                        **trainer.epoch_state()})
        on_epoch(history)
    return history
