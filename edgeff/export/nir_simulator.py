"""EdgeFF's reference simulator of NIR graphs: NumPy, discrete time, NIR's IF rule, batched over samples.

One step (dt = 1) visits the nodes in topological order; a node's input is the sum of its predecessors' outputs
of the same step (NIR sums the edges into a node), so a spike crosses the whole feed-forward graph in one step.
Nodes: Input (its current, the same every step), Affine (W x + b), Linear (W x), Scale (s x), IF and Output.
Nodes fed only by constants (the Input and the Affine behind it) are computed once. IF, as NIR documents it
(dv/dt = R I; z = 1 when v > v_threshold; then v = v_reset):

    v <- v + r * I;   z = v > v_threshold;   v <- v_reset where z        (reset="nir", the rule of the file)
    v <- v - v_threshold where z                                         (reset="subtract", sinabs' rule)

Both fire at most one spike per step; v starts at 0. What an Output receives is summed over the steps: divided
by T it is the graph's rate-coded output. Synaptic operations are counted as each spike times its neuron's
fan-out (its nonzero weights in the nodes it feeds); the constant input current is no synaptic event.
"""
import numpy as np
from tqdm import tqdm

from edgeff.errors import EdgeFFError
from edgeff.export.nir_graph import nir_package

RESETS = ("nir", "subtract")
BATCH = 1000


def _order(graph) -> list:
    """The node names in topological order; a cycle or an unsupported node is refused by name."""
    nir = nir_package()

    supported = (nir.Input, nir.Affine, nir.Linear, nir.Scale, nir.IF, nir.Output)
    for name, node in graph.nodes.items():
        if not isinstance(node, supported):
            raise EdgeFFError(f"NIR node {name!r} is a {type(node).__name__}; EdgeFF's simulator runs "
                              f"{', '.join(t.__name__ for t in supported)} nodes")
    indegree = {name: 0 for name in graph.nodes}
    for _, dst in graph.edges:
        indegree[dst] += 1
    ready, order = [n for n, d in indegree.items() if d == 0], []
    while ready:
        name = ready.pop()
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        raise EdgeFFError("the NIR graph has a cycle; EdgeFF's simulator runs feed-forward graphs")
    return order


class Simulator:
    """A NIR graph (read back with nir.read) ready to run: its order, inputs, outputs and fan-outs."""

    def __init__(self, graph):
        nir = nir_package()
        self.graph, self.order = graph, _order(graph)
        self.preds = {name: [s for s, d in graph.edges if d == name] for name in graph.nodes}
        kinds = {name: type(node) for name, node in graph.nodes.items()}
        self.inputs = [n for n in self.order if kinds[n] is nir.Input]
        self.outputs = [n for n in self.order if kinds[n] is nir.Output]
        if len(self.inputs) != 1 or not self.outputs:
            raise EdgeFFError(f"the NIR graph has {len(self.inputs)} Input and {len(self.outputs)} Output nodes; "
                              "EdgeFF's simulator runs graphs of one Input and at least one Output")
        self.populations = [n for n in self.order if kinds[n] is nir.IF]
        constant = set(self.inputs)
        for name in self.order:   # stateless nodes fed by constants only are constant themselves
            if kinds[name] in (nir.Affine, nir.Linear, nir.Scale) and all(p in constant for p in self.preds[name]):
                constant.add(name)
        self.constant = constant
        self.fan_out = {n: self._fan_out(n) for n in self.populations}

    def _fan_out(self, name: str) -> np.ndarray:
        """Per neuron of IF node `name`: the synapses its spikes drive (nonzero weights of the nodes it feeds)."""
        node = self.graph.nodes[name]
        total = np.zeros(node.v_threshold.shape, np.int64)
        for src, dst in self.graph.edges:
            if src == name:
                target = self.graph.nodes[dst]
                weight = getattr(target, "weight", None)
                total += (np.count_nonzero(weight, axis=0) if weight is not None
                          else np.ones_like(total))   # Scale, IF, Output: one synapse per neuron
        return total

    @property
    def neurons(self) -> int:
        return sum(int(self.graph.nodes[n].v_threshold.size) for n in self.populations)

    def _apply(self, name: str, x):
        node = self.graph.nodes[name]
        if hasattr(node, "bias"):
            return x @ node.weight.T + node.bias
        if hasattr(node, "weight"):
            return x @ node.weight.T
        if hasattr(node, "scale"):
            return x * node.scale
        return x

    def _run_batch(self, currents: np.ndarray, timesteps: list, reset: str, keep_counts: bool) -> tuple:
        n = len(currents)
        value = {self.inputs[0]: currents.astype(np.float32)}
        for name in self.order:
            if name in self.constant and name not in value:
                value[name] = self._apply(name, sum(value[p] for p in self.preds[name]))
        v = {p: np.zeros((n, self.graph.nodes[p].v_threshold.size)) for p in self.populations}
        counts = {p: np.zeros_like(v[p]) for p in self.populations}
        sums = {o: 0.0 for o in self.outputs}
        out, spikes, ops = {}, {}, {}
        for t in range(1, max(timesteps) + 1):
            step = dict(value)
            for name in self.order:
                if name in self.constant:
                    continue
                x = sum(step[p] for p in self.preds[name])
                node = self.graph.nodes[name]
                if name in v:
                    v[name] += node.r * x
                    z = v[name] > node.v_threshold
                    if reset == "nir":
                        v[name] = np.where(z, node.v_reset, v[name])
                    else:
                        v[name] -= z * node.v_threshold
                    counts[name] += z
                    step[name] = z.astype(np.float32)
                elif name in sums:
                    sums[name] = sums[name] + x
                    step[name] = x
                else:
                    step[name] = self._apply(name, x)
            if t in timesteps:
                out[t] = {o: sums[o] / t for o in self.outputs}
                spikes[t] = {p: counts[p].copy() for p in self.populations} if keep_counts else {}
                ops[t] = sum(counts[p] @ self.fan_out[p] for p in self.populations)
        return out, spikes, ops

    def rates(self, currents: np.ndarray) -> dict:
        """{Output name: (N, width)}: the T -> infinity limit of the outputs under reset by subtraction, where a
        neuron of constant input fires at rate clip(r I / v_threshold, 0, 1): the ANN the graph stands for (its
        folded normalizations and clipped activities), without the error of counting spikes."""
        value = {self.inputs[0]: currents.astype(np.float32)}
        for name in self.order:
            if name in value:
                continue
            x = sum(value[p] for p in self.preds[name])
            node = self.graph.nodes[name]
            value[name] = (np.clip(node.r * x / node.v_threshold, 0.0, 1.0) if name in self.populations
                           else x if name in self.outputs else self._apply(name, x))
        return {o: value[o] for o in self.outputs}

    def run(self, currents: np.ndarray, timesteps, reset: str = "nir", keep_counts=False, progress=False,
            desc="NIR simulation"):
        """For every T in timesteps: {"outputs": {Output name: (N, width) summed input / T}, "synaptic_ops": (N,),
        "spike_counts": {IF name: (N, neurons)} with keep_counts}, after T steps of currents (N, input width)."""
        if reset not in RESETS:
            raise ValueError(f"reset {reset!r} must be one of {RESETS}")
        timesteps = sorted(set(int(t) for t in timesteps))
        if not timesteps or timesteps[0] < 1:
            raise EdgeFFError(f"timesteps {timesteps} must be whole numbers of at least 1")
        parts = [self._run_batch(currents[s:s + BATCH], timesteps, reset, keep_counts)
                 for s in tqdm(range(0, len(currents), BATCH), desc=desc, unit="batch", disable=not progress,
                               leave=False)]
        return {t: {"outputs": {o: np.concatenate([p[0][t][o] for p in parts]) for o in self.outputs},
                    "spike_counts": {q: np.concatenate([p[1][t][q] for p in parts]) for q in parts[0][1][t]},
                    "synaptic_ops": np.concatenate([p[2][t] for p in parts])} for t in timesteps}
