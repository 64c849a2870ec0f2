"""The cross-check of a NIR export with an independent reader: sinabs (`sinabs.from_nir`, the `nir-check` extra).

sinabs reads a NIR IF as its IAFSqueeze: it ignores r and v_reset, resets by subtraction, fires floor(v /
threshold) spikes in one step once v >= threshold (several at once), and clips the membrane below at -threshold.
Where an export stays inside those (r = 1, at most one spike per step, which the calibration's clipped rates
ask for) sinabs computes what EdgeFF's simulator computes with reset="subtract"; it cannot run NIR's own rule,
reset to v_reset. Its model takes every time step of every sample as one row of a (N * T, inputs) batch.
"""
import numpy as np


def sinabs_outputs(graph, currents: np.ndarray, timesteps: int, batch: int = 200) -> np.ndarray:
    """(N, outputs): sinabs' Output of the graph summed over `timesteps` steps of constant currents, over T."""
    import sinabs
    import torch

    parts = []
    for start in range(0, len(currents), batch):
        x = torch.from_numpy(np.ascontiguousarray(currents[start:start + batch], np.float32))
        n, width = x.shape
        model = sinabs.from_nir(graph, batch_size=n)   # fresh membranes per batch
        with torch.no_grad():
            out = model(x[:, None, :].expand(n, timesteps, width).reshape(n * timesteps, width))[0]
        parts.append(out.reshape(n, timesteps, -1).sum(dim=1).numpy() / timesteps)
    return np.concatenate(parts)
