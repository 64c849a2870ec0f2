"""FFNetwork <-> EdgeFF model file (edgeff.model_file): the float model every later stage starts from."""
import torch

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.model_file import is_layered, load_model, save_model
from edgeff.train.conv_network import ConvFFNetwork
from edgeff.train.network import FFNetwork


def architecture(net, eval_layers) -> dict:
    if isinstance(net, ConvFFNetwork):
        return {"kind": ModelKind.FLOAT, "layers": net.description.to_header(), "n_classes": net.n_classes,
                "objective": net.objective, "label_value": net.label_value, "goodness": "mean",
                "collab_mode": "none", "eval_layers": list(eval_layers), "head_layers": net.head_layers,
                "qat": False, "input": "uint8 pixels / 255, shaped as the first layer's input (C, H, W)"}
    return {"kind": ModelKind.FLOAT, "layers": net.description.to_header(),
            "n_classes": net.n_classes, "label_value": net.label_value, "goodness": net.goodness_kind,
            "collab_mode": net.collab_mode, "eval_layers": list(eval_layers),
            "head_layers": net.head_layers, "qat": net.qat,
            "input": "uint8 pixels / 255; the first n_classes pixels hold one-hot(label) * label_value"}


def network_tensors(net: FFNetwork) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def save_network(path, net: FFNetwork, eval_layers, **header):
    return save_model(path, network_tensors(net), {"architecture": architecture(net, eval_layers), **header})


def load_network(path) -> tuple[FFNetwork, dict]:
    """Load a float FF model file; returns the network (eval mode) and the whole header."""
    tensors, header = load_model(path)
    arch = header.get("architecture")
    if not isinstance(arch, dict) or arch.get("kind") != ModelKind.FLOAT:
        raise EdgeFFError(f"{path}: not a float FF model (architecture kind "
                          f"{(arch or {}).get('kind')!r}); this command needs a file from `edgeff train`")
    description = ModelDescription.from_header(arch["layers"], str(path))
    if is_layered(arch):   # a layered network (conv blocks, flatten, dense)
        net = ConvFFNetwork(description, arch["n_classes"], arch["objective"], arch["head_layers"],
                            arch["label_value"])
    else:
        net = FFNetwork(description, arch["n_classes"], arch["label_value"], arch["goodness"], arch["collab_mode"],
                        head_layers=arch["head_layers"], qat=arch.get("qat", False))
    shapes = {k: v.shape for k, v in net.state_dict().items()}   # a scalar buffer comes back with shape (1,)
    net.load_state_dict({k: torch.from_numpy(v).reshape(shapes.get(k, v.shape)) for k, v in tensors.items()})
    return net.eval(), header
