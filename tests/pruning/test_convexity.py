import itertools

import numpy as np
import pytest

from espnet_ext.pruning.convexity import graph_convexity, keep_until_peak, knn_graph, layer_budget


def chain(n):
    """Points on a line with growing gaps: with k = 1 the kNN graph is the chain 0-1-...-n-1."""
    x = np.arange(n) + 1e-3 * np.arange(n) ** 2
    return np.stack([x, np.zeros(n)], 1)


def test_knn_graph_of_a_chain():
    g = knn_graph(chain(6), k=1).toarray()
    assert [(i, j) for i, j in zip(*np.nonzero(np.triu(g)))] == [(i, i + 1) for i in range(5)]


def test_split_class_known_answer():
    """Class A = points 0-9 and 20-29, class B = 10-19 between them, k = 1 (a chain).

    A path from i to j runs through all points between them. Within a block
    it stays in the class (score 1); from i < 10 to j >= 20 it has j - i - 1
    inner points, 10 of them B. B is one block: score 1. Convexity = mean of
    the two class scores.
    """
    labels = np.array(["A"] * 10 + ["B"] * 10 + ["A"] * 10)
    scores_a = []
    for i, j in itertools.combinations(list(range(10)) + list(range(20, 30)), 2):
        scores_a.append(1.0 if j < 20 or i >= 20 else (j - i - 11) / (j - i - 1))
    expected = (np.mean(scores_a) + 1.0) / 2
    r = graph_convexity(chain(30), labels, k=1)
    assert r["paths"] == 190 + 45  # every same-class pair
    assert r["per_class"]["B"] == 1.0
    assert r["per_class"]["A"] == pytest.approx(np.mean(scores_a), abs=1e-12)
    assert r["score"] == pytest.approx(expected, abs=1e-12)
    assert 0.85 < r["score"] < 0.86


def test_separated_clusters_are_convex_and_shuffled_labels_are_not():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (60, 8)), rng.normal(30, 1, (60, 8))])
    labels = np.array([0] * 60 + [1] * 60)
    assert graph_convexity(x, labels, k=10)["score"] == 1.0
    shuffled = graph_convexity(x, rng.permutation(labels), k=10, max_paths=500)
    assert shuffled["score"] < 0.75
    assert shuffled["paths"] <= 500 + 2


def test_path_budget_is_respected():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    r = graph_convexity(x, rng.integers(0, 3, 200), k=10, max_paths=300)
    assert 250 <= r["paths"] <= 303


def test_keep_until_peak_and_budget():
    assert keep_until_peak([0.2, 0.5, 0.9, 0.7]) == 3
    scores = {"encoder": [0.3, 0.6, 0.8, 0.7], "decoder": [0.5, 0.9, 0.4, 0.3]}
    macs = {"encoder": [10.0] * 4, "decoder": [5.0] * 4}
    assert layer_budget(scores, macs, fixed_macs=20.0) == {"encoder": 3, "decoder": 2}
    # budget 50% of 80 = 40: from (3, 2) = 60 drop the less convex top layer each time
    keep = layer_budget(scores, macs, fixed_macs=20.0, target_fraction=0.5)
    assert keep == {"encoder": 1, "decoder": 2}
    assert 20 + 10 * keep["encoder"] + 5 * keep["decoder"] <= 40


def test_invalid_inputs():
    with pytest.raises(ValueError, match="labels"):
        graph_convexity(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="no class has two points"):
        graph_convexity(np.eye(3), [0, 1, 2])
