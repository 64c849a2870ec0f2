"""The tensors autograd saves for the backward pass, recorded per layer with torch's saved-tensor hooks, the
ground truth of the profiler's analytic saved-activation bytes (edgeff.profiler.memory_model.saved_bytes).

A network with conv blocks is trained as edgeff trains it and as edgeff.train.torch_memory measures it:
  ff        channel-wise competitive FF: each trained layer's forward and CwC loss on its detached input, one
            layer's graph at a time (each record holds one layer's graph and its loss);
  backprop  the same layers end to end through the softmax head (one graph; a tensor counts for the layer
            whose forward saved it first, the head's and the loss's for "head").
Each saved tensor counts once per record, by its storage (ReLU's output and MaxPool's input are one tensor,
a flatten is a view), in its storage's bytes; parameters and BatchNorm's running statistics are the model's
weights, not activations, and are left out.
"""
import torch
import torch.nn.functional as F

from edgeff.model_description import ModelDescription
from edgeff.train.conv_network import ConvFFNetwork


class _Recorder:
    """Storage bytes of the tensors saved while `layer` is set, once per storage, without the model's own."""

    def __init__(self, net: torch.nn.Module):
        self.own = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
        self.seen, self.bytes, self.layer = set(), {}, None

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.own and storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            self.bytes[self.layer] = self.bytes.get(self.layer, 0) + storage.nbytes()
        return t

    def graph(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


def saved_bytes(method: str, description: ModelDescription, batch: int, n_classes: int = 10,
                seed: int = 0) -> dict:
    """{"layers": bytes per layer of `description`, "head": the head's and its loss's (0 for ff)} of one
    training step of `method` ("ff" or "backprop") on random images."""
    torch.manual_seed(seed)
    x = torch.rand(batch, *description.input_shape)
    y = torch.randint(0, n_classes, (batch,))
    net = ConvFFNetwork(description, n_classes, "cwc" if method == "ff" else "backprop")
    n = net.n_layers
    if method == "ff":
        layers = []
        for k in range(n):
            recorder = _Recorder(net)
            with recorder.graph():
                out = net.run(x, k, k + 1)[0]
                if k in net.trained:
                    net.layer_loss(out, y, batch, 0.0)
            layers.append(recorder.bytes.get(None, 0))
            x = out.detach()
        return {"layers": layers, "head": 0}
    recorder = _Recorder(net)
    outs = [x]
    with recorder.graph():
        for k in range(n):
            recorder.layer = k
            outs.append(net.run(outs[-1], k, k + 1, cut=False)[0])
        recorder.layer = "head"
        F.cross_entropy(net.head(net.head_input(outs[1:])), y)
    return {"layers": [recorder.bytes.get(k, 0) for k in range(n)], "head": recorder.bytes.get("head", 0)}
