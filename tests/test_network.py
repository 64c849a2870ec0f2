import numpy as np
import pytest
import torch

from edgeff.data.labels import overlay_labels
from edgeff.train.losses import ff_loss
from edgeff.train.network import FFNetwork


def embed_labels(images: np.ndarray, labels: np.ndarray, n_classes: int, value: float) -> np.ndarray:
    """Float32 images scaled to [0, 1] with the label overlay, as the trainer feeds them."""
    return overlay_labels(images.astype(np.float32) / 255.0, labels, n_classes, value)


def _batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    return imgs, y, (y + 1 + rng.integers(0, 9, n)) % 10


def _goodness_pair(net, imgs, y, y_neg):
    xp = torch.from_numpy(embed_labels(imgs, y, 10, net.label_value))
    xn = torch.from_numpy(embed_labels(imgs, y_neg, 10, net.label_value))
    return net.collaborative(net.layer_goodness(xp)), net.collaborative(net.layer_goodness(xn))


@pytest.mark.parametrize("mode", ["none", "fixed", "adaptive"])
def test_each_layer_update_is_local(mode):
    """The gradient of layer l's (collaborative) loss reaches layer l's weights and no other layer's."""
    torch.manual_seed(0)
    net = FFNetwork([784, 40, 30, 20], collab_mode=mode, gamma_init=0.7)
    imgs, y, y_neg = _batch()
    for l in range(3):
        net.zero_grad(set_to_none=True)
        gp, gn = _goodness_pair(net, imgs, y, y_neg)
        ff_loss("softplus", gp, gn, 2.0, 4.0)[l].backward()
        for k, layer in enumerate(net.layers):
            grad = layer.weight.grad
            if k == l:
                assert grad is not None and grad.abs().sum() > 0
            else:
                assert grad is None or grad.abs().sum() == 0, f"loss of layer {l + 1} reached layer {k + 1}"


def test_collaboration_changes_the_local_gradient():
    """F-CFF reweights layer l's own update by the other layers' goodness (else it would be plain FF)."""
    torch.manual_seed(0)
    ff = FFNetwork([784, 40, 30], collab_mode="none")
    cff = FFNetwork([784, 40, 30], collab_mode="fixed", gamma_init=1.0)
    cff.load_state_dict({**ff.state_dict(), "gamma": cff.gamma.data}, strict=True)
    imgs, y, y_neg = _batch()
    grads = []
    for net in (ff, cff):
        gp, gn = _goodness_pair(net, imgs, y, y_neg)
        ff_loss("softplus", gp, gn, 2.0, 4.0)[0].backward()
        grads.append(net.layers[0].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_collaborative_goodness_matches_equation_5():
    net = FFNetwork([784, 8, 8, 8], collab_mode="fixed", gamma_init=0.5)
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    expected = torch.stack([g[0] + 0.5 * (g[1] + g[2]) / 2, g[1] + 0.5 * (g[0] + g[2]) / 2,
                            g[2] + 0.5 * (g[0] + g[1]) / 2])
    assert torch.allclose(net.collaborative(g), expected)
    assert torch.equal(FFNetwork([784, 8, 8]).collaborative(g[:2]), g[:2])


@pytest.mark.parametrize("normalization", ["rms", "length"])
def test_label_scores_equal_one_forward_per_label(normalization):
    """The shared-matmul + rank-1 shortcut gives what n_classes separate forward passes give."""
    torch.manual_seed(1)
    net = FFNetwork([784, 50, 30], label_value=1.7, goodness="sum", normalization=normalization)
    imgs, _, _ = _batch(20)
    x0 = torch.from_numpy(imgs.astype(np.float32) / 255)
    x0[:, :10] = 0
    fast = net.label_scores(x0)
    for c in range(10):
        slow = net.layer_goodness(torch.from_numpy(embed_labels(imgs, np.full(20, c), 10, 1.7)))
        assert torch.allclose(fast[:, :, c], slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["softplus", "symba"])
def test_losses_fall_as_goodness_separates(kind):
    low = ff_loss(kind, torch.tensor([[1.0]]), torch.tensor([[1.0]]), 2.0, 4.0)
    high = ff_loss(kind, torch.tensor([[5.0]]), torch.tensor([[0.1]]), 2.0, 4.0)
    assert high.item() < low.item()
