"""Graph convexity of class regions in a representation space.

Reference: Tětková et al., "On convex decision regions in deep network
representations" and its use for layer pruning, arXiv 2408.11858: a class
region is (graph-)convex when the shortest paths between its points, in a
k-nearest-neighbour graph of all points, stay inside the class.

``graph_convexity`` builds the symmetric kNN graph (Euclidean edge weights),
samples up to ``max_paths`` pairs of points of the same class, takes the
shortest path between each pair (Dijkstra) and scores it by the fraction of
its inner vertices that belong to the class (a path that is a single edge
scores 1; pairs with no path are skipped). The score of a class is the mean
over its paths; the convexity is the mean over classes.

``keep_until_peak``: the layer-pruning criterion, keep the layers up to
(and including) the one where convexity peaks, drop the rest.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra


def knn_graph(x: np.ndarray, k: int = 10) -> csr_matrix:
    """Symmetric kNN graph with Euclidean weights.

    Args:
        x (np.ndarray): (N, D) points.
        k (int): Neighbours per point (self excluded).

    Returns:
        csr_matrix: (N, N) weights; an edge exists when either end is among
        the other's k nearest neighbours.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 points, got {n}")
    k = min(k, n - 1)
    x = x.astype(np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    nbr = np.argpartition(d2, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    cols = nbr.reshape(-1)
    w = np.sqrt(d2[rows, cols])
    w = np.maximum(w, 1e-12)  # duplicates: keep the edge (a zero weight is "no edge")
    g = csr_matrix((w, (rows, cols)), shape=(n, n))
    return g.maximum(g.T)


def _path(pred: np.ndarray, src_row: int, dst: int) -> List[int]:
    path = [dst]
    while True:
        p = pred[src_row, path[-1]]
        if p < 0:
            break
        path.append(int(p))
    return path[::-1]


def graph_convexity(
    x: np.ndarray,
    labels: Sequence,
    k: int = 10,
    max_paths: int = 5000,
    seed: int = 0,
) -> Dict[str, object]:
    """Graph convexity of every class of ``labels`` in the space of ``x``.

    Args:
        x (np.ndarray): (N, D) representations.
        labels (Sequence): N class labels (any hashable).
        k (int): Neighbours of the kNN graph.
        max_paths (int): Same-class pairs sampled in all (spread over classes
            in proportion to their number of pairs; all pairs when fewer).
        seed (int): Sampling seed.

    Returns:
        dict: "score" (mean over classes), "per_class" {label: score},
        "paths" (number of scored paths).
    """
    labels = np.asarray(labels)
    if len(labels) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} points but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(labels) if (labels == c).sum() >= 2]
    if not classes:
        raise ValueError("no class has two points")
    members = {c: np.flatnonzero(labels == c) for c in classes}
    n_pairs = {c: len(m) * (len(m) - 1) // 2 for c, m in members.items()}
    total = sum(n_pairs.values())
    pairs = []
    for c, m in members.items():
        budget = n_pairs[c] if total <= max_paths else max(1, round(max_paths * n_pairs[c] / total))
        if budget >= n_pairs[c]:
            i, j = np.triu_indices(len(m), 1)
        else:
            i = rng.integers(0, len(m), size=4 * budget)
            j = rng.integers(0, len(m), size=4 * budget)
            keep = i != j
            i, j = np.unique(np.sort(np.stack([i[keep], j[keep]], 1), 1), axis=0)[:budget].T
        pairs += [(c, int(m[a]), int(m[b])) for a, b in zip(i, j)]
    graph = knn_graph(x, k)
    sources = sorted({s for _, s, _ in pairs})
    row = {s: r for r, s in enumerate(sources)}
    dist, pred = dijkstra(graph, directed=False, indices=sources, return_predecessors=True)
    scores: Dict[object, List[float]] = {c: [] for c in classes}
    for c, s, t in pairs:
        if not np.isfinite(dist[row[s], t]):
            continue
        inner = _path(pred, row[s], t)[1:-1]
        scores[c].append(1.0 if not inner else float(np.mean(labels[inner] == c)))
    per_class = {_plain(c): float(np.mean(v)) for c, v in scores.items() if v}
    if not per_class:
        raise ValueError("no same-class pair is connected in the kNN graph")
    return {
        "score": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "paths": int(sum(len(v) for v in scores.values())),
    }


def _plain(c):
    return c.item() if hasattr(c, "item") else c


def keep_until_peak(scores: Sequence[float]) -> int:
    """Number of layers to keep: up to and including the convexity peak.

    Args:
        scores: Convexity per layer (layer 1 first).
    """
    if not len(scores):
        raise ValueError("no scores")
    return int(np.argmax(np.asarray(scores))) + 1


def layer_budget(
    scores: Dict[str, Sequence[float]],
    layer_macs: Dict[str, Sequence[float]],
    fixed_macs: float,
    target_fraction: Optional[float] = None,
) -> Dict[str, int]:
    """Layers to keep per side: the convexity criterion, then a FLOPs budget.

    First every side keeps its layers up to its convexity peak. With
    ``target_fraction``, top layers are then dropped one by one, always from
    the side whose current top layer is the less convex one, until the
    MACs fall to ``target_fraction`` of the unpruned model (at least one layer
    per side stays).

    Args:
        scores: {"encoder": [...], "decoder": [...]} convexity per layer.
        layer_macs: The same keys, MACs of each layer.
        fixed_macs (float): MACs of everything else (subsampling, output layer).
        target_fraction (float): Optional FLOPs budget (fraction of the full model).

    Returns:
        {side: layers to keep}.
    """
    full = fixed_macs + sum(sum(v) for v in layer_macs.values())
    keep = {side: keep_until_peak(s) for side, s in scores.items()}
    for side in layer_macs:
        keep.setdefault(side, len(layer_macs[side]))

    def cost() -> float:
        return fixed_macs + sum(sum(layer_macs[s][: keep[s]]) for s in layer_macs)

    if target_fraction is not None:
        while cost() > target_fraction * full:
            options = [s for s in scores if keep[s] > 1]
            if not options:
                break
            side = min(options, key=lambda s: (scores[s][keep[s] - 1], s))
            keep[side] -= 1
    return keep
