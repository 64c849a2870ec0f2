import numpy as np

from edgeff.data.labels import embed_labels, hardest_wrong_labels, random_wrong_labels


def test_embed_labels_overwrites_first_pixels_with_one_hot():
    imgs = np.full((3, 784), 255, np.uint8)
    x = embed_labels(imgs, np.array([0, 4, 9]), 10, 2.5)
    assert x.dtype == np.float32
    expected = np.zeros((3, 10), np.float32)
    expected[[0, 1, 2], [0, 4, 9]] = 2.5
    assert np.array_equal(x[:, :10], expected)
    assert np.all(x[:, 10:] == 1.0)          # pixels scaled to [0, 1], the rest untouched
    assert imgs[0, 0] == 255                  # the caller's images are not modified


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
