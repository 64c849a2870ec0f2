"""Quantization-aware training with Brevitas (`[model] qat = true`): the whole-model QCDQ export.

Each layer kind's fake-quantized module is in its op folder (edgeff/ops/dense/qat_module.py for the dense
layer, with why its formats are what they are). `edgeff quantize` turns such a model into the int8 model
file with exactly those integers and output ranges; `edgeff export --format onnx` writes Brevitas' QCDQ
ONNX of it through the module below. Brevitas is imported only for QAT models.
"""
import warnings

import torch

from edgeff.data.labels import overlay_labels


class MultiPassModule(torch.nn.Module):
    """images (N, D) in [0, 1] -> goodness (n_layers, N, C) for every label and the one-pass logits,
    through the network's own (fake-quantized) layers: what the QCDQ export traces."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        net, c = self.net, self.net.n_classes
        tail = images[:, c:]
        rows = []
        for label in range(c):   # a constant per label under tracing: the graph concatenates it to the pixels
            one_hot = overlay_labels(torch.zeros(1, c, dtype=images.dtype), torch.tensor([label]), c, net.label_value)
            rows.append(torch.cat([one_hot.expand(images.shape[0], c), tail], dim=1))
        goodness = net.layer_goodness(torch.cat(rows, dim=0))                     # (L, C * N)
        goodness = goodness.reshape(net.n_layers, c, -1).transpose(1, 2)            # (L, N, C)
        return goodness, net.head_logits(torch.cat([torch.zeros_like(images[:, :c]), tail], dim=1))


def export_qcdq(net, path, example: torch.Tensor):
    """Brevitas' QCDQ ONNX (QuantizeLinear, Clip, DequantizeLinear around float ops) of the multi-pass
    module, with a dynamic batch dimension."""
    with warnings.catch_warnings():   # brevitas' exporter imports an optional kernel package and says so
        warnings.filterwarnings("ignore", message="fast_hadamard_transform")
        from brevitas.export import export_onnx_qcdq

    export_onnx_qcdq(MultiPassModule(net.eval()), args=example, export_path=str(path), input_names=["images"],
                     output_names=["goodness", "logits"], dynamic_axes={"images": {0: "N"}, "goodness": {1: "N"},
                                                                        "logits": {0: "N"}},
                     dynamo=False, opset_version=17)
