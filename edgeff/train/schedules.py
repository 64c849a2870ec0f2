"""Local update schedules (Ortiz Torres et al. sec. II-B c): which layers each layer's loss may reach.

A schedule cuts the network into groups of consecutive layers for one training step. A group's input is
detached, so a loss never backpropagates beyond its group; every trained layer's own loss is counted in
exactly one group (the first that holds it). Groups are (start, stop, owned): layers start..stop-1,
0-based, and the layers whose losses this group counts.

  greedy       every layer alone: Hinton's FF, each layer learns from its own loss only
  chunked      consecutive chunks of `chunk` layers; a loss reaches back to its chunk's first layer. With
               `alternate`, the chunk boundaries shift by one layer each step (step mod chunk), so that every
               boundary is crossed on some steps: the chunked updates that alternate between iterations of
               Ortiz Torres et al. sec. III
  overlapping  groups of `chunk` layers, each starting at the last layer of the one before (stride chunk-1)
  backprop     one group of every layer, the loss is the head's
"""
from edgeff.errors import EdgeFFError

SCHEDULES = ("greedy", "chunked", "overlapping", "backprop")


def groups(schedule: str, n_layers: int, chunk: int = 2, step: int = 0, alternate: bool = True) -> list:
    if schedule not in SCHEDULES:
        raise EdgeFFError(f"schedule {schedule!r} must be one of {', '.join(SCHEDULES)}")
    if chunk < 1 or (schedule == "overlapping" and chunk < 2):
        raise EdgeFFError(f"chunk {chunk}: a chunked schedule needs chunk >= 1, an overlapping one chunk >= 2")
    if schedule == "backprop":
        return [(0, n_layers, ())]
    if schedule == "greedy":
        chunk, schedule = 1, "chunked"
    if schedule == "chunked":
        offset = step % chunk if alternate else 0
        starts = sorted({0, *range(offset, n_layers, chunk)})
        stops = [*starts[1:], n_layers]
        return [(a, b, tuple(range(a, b))) for a, b in zip(starts, stops, strict=True)]
    out, start, done = [], 0, 0
    while done < n_layers:
        stop = min(start + chunk, n_layers)
        out.append((start, stop, tuple(range(done, stop))))
        done, start = stop, stop - 1
    return out
