import numpy as np
import torch

from edgeff.data.labels import hardest_wrong_labels, overlay_labels, overlay_neutral, random_wrong_labels


def test_overlay_labels_writes_one_hot_into_numpy_and_torch_alike():
    for lib in (np, torch):
        x = lib.ones((3, 20)) if lib is torch else np.ones((3, 20), np.float32)
        labels = lib.tensor([0, 4, 9]) if lib is torch else np.array([0, 4, 9])
        out = overlay_labels(x, labels, 10, 2.5)
        assert out is x                                   # in place
        expected = np.zeros((3, 10), np.float32)
        expected[[0, 1, 2], [0, 4, 9]] = 2.5
        assert np.array_equal(np.asarray(x[:, :10]), expected)
        assert np.all(np.asarray(x[:, 10:]) == 1.0)       # the image pixels are untouched


def test_overlay_neutral_gives_every_label_pixel_the_value():
    x = np.ones((2, 15), np.int8)
    overlay_neutral(x, 10, -100)
    assert np.all(x[:, :10] == -100) and np.all(x[:, 10:] == 1)


def test_random_wrong_labels_never_true_and_uniform():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200_000)
    neg = random_wrong_labels(y, 10, rng)
    assert not np.any(neg == y)
    # every wrong label equally likely: 1/9 each, for every true label
    for c in (0, 7):
        counts = np.bincount(neg[y == c], minlength=10) / np.sum(y == c)
        assert counts[c] == 0
        assert np.allclose(np.delete(counts, c), 1 / 9, atol=0.01)


def test_hardest_wrong_label_skips_the_true_one():
    scores = np.array([[5.0, 4.0, 1.0], [0.0, 3.0, 2.0], [1.0, 1.0, 9.0]])
    assert hardest_wrong_labels(scores, np.array([0, 1, 0])).tolist() == [1, 2, 2]
    assert scores[0, 0] == 5.0  # not modified in place
    ints = np.array([[-5, -9, -7]], np.int64)  # integer goodness, all negative: the mask must go lower
    assert hardest_wrong_labels(ints, np.array([0])).tolist() == [2]


def test_overlay_writes_numpy_and_torch_alike():
    import torch

    from edgeff.data.labels import overlay_labels, overlay_neutral

    rng = np.random.default_rng(1)
    x = rng.random((6, 20)).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    a = overlay_labels(x.copy(), labels, 10, 1.5)
    t = overlay_labels(torch.from_numpy(x.copy()), torch.from_numpy(labels), 10, 1.5)
    assert np.array_equal(a, t.numpy())
    expected = x.copy()
    expected[:, :10] = 0.0
    expected[np.arange(6), labels] = 1.5
    assert np.array_equal(a, expected)
    q = overlay_labels(np.full((6, 20), 5, np.int8), labels, 10, 127, -128)   # the int8 input
    assert (q[:, 10:] == 5).all() and (q[:, :10] != -128).sum() == 6 and (q[np.arange(6), labels] == 127).all()
    n = overlay_neutral(torch.from_numpy(x.copy()), 10, 0.25)
    assert (n[:, :10] == 0.25).all() and torch.equal(n[:, 10:], torch.from_numpy(x[:, 10:]))
