"""Pairwise mutual information and the Chow-Liu tree (maximum spanning tree of MI)."""

from __future__ import annotations

import numpy as np
import torch


def mutual_information(
    x: np.ndarray,
    num_cats: np.ndarray | int,
    pseudocount: float = 0.1,
    max_rows: int | None = 20000,
    seed: int = 0,
    device=None,
) -> np.ndarray:
    """MI [V, V] of discrete data x [N, V] (values 0..K-1; a row missing (-1) in either variable
    of a pair is left out of that pair's counts). Each pair's joint distribution is smoothed with
    `pseudocount` spread over its K_i * K_j cells.

    The joint counts are co-occurrence products of one-hot codes (exact in float32), computed
    block by block over the upper triangle only, on `device` (default: CUDA when available);
    bench/README.md has the timings against the alternatives."""
    x = np.asarray(x)
    if max_rows is not None and x.shape[0] > max_rows:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)]
    N, V = x.shape
    cats = np.broadcast_to(np.asarray(num_cats), (V,)).astype(np.int64)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    K = int(cats.max()) if V else 1
    xt = torch.as_tensor(x.astype(np.int64), device=device)
    onehot = torch.zeros(N, V, K, device=device)
    onehot.scatter_(2, xt.clamp_min(0).unsqueeze(2), (xt >= 0).unsqueeze(2).float())
    flat = onehot.reshape(N, V * K)
    ar = np.arange(K)
    mi = np.zeros((V, V))
    block = max(1, min(V, (1 << 24) // max(1, V * K * K)))  # keeps each product's output near 64 MB
    for i0 in range(0, V - 1, block):
        i1 = min(V, i0 + block)
        co = (flat[:, i0 * K : i1 * K].T @ flat[:, i0 * K :]).reshape(i1 - i0, K, V - i0, K)
        co = co.permute(0, 2, 1, 3).double().cpu().numpy()  # [i, j, a, b]
        for i in range(i0, min(i1, V - 1)):
            js = np.arange(i + 1, V)
            counts = co[i - i0, i + 1 - i0 :]
            valid = (ar[None, :, None] < cats[i]) & (ar[None, None, :] < cats[js][:, None, None])
            pij = counts + valid * (pseudocount / (cats[i] * cats[js]))[:, None, None]
            pij /= pij.sum((1, 2), keepdims=True)
            mi[i, js] = mi[js, i] = _entropy(pij.sum(2)) + _entropy(pij.sum(1)) - _entropy(pij)
    return mi


def _entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log p over all axes but the first (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).reshape(p.shape[0], -1).sum(1)


def maximum_spanning_tree(weights: np.ndarray) -> list[tuple[int, int]]:
    """Prim's algorithm on a dense symmetric matrix; returns V-1 undirected edges."""
    V = weights.shape[0]
    if V <= 1:
        return []
    in_tree = np.zeros(V, bool)
    in_tree[0] = True
    best = weights[0].astype(np.float64).copy()
    parent = np.zeros(V, np.int64)
    edges = []
    for _ in range(V - 1):
        cand = np.where(in_tree, -np.inf, best)
        v = int(np.argmax(cand))
        edges.append((int(parent[v]), v))
        in_tree[v] = True
        upd = (weights[v] > best) & ~in_tree
        best[upd] = weights[v][upd]
        parent[upd] = v
    return edges


def tree_center(V: int, edges: list[tuple[int, int]]) -> int:
    """A vertex of minimum eccentricity (middle of a longest path)."""
    adj: list[list[int]] = [[] for _ in range(V)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)

    def bfs(s):
        dist = [-1] * V
        prev = [-1] * V
        dist[s] = 0
        queue = [s]
        for u in queue:
            for w in adj[u]:
                if dist[w] < 0:
                    dist[w], prev[w] = dist[u] + 1, u
                    queue.append(w)
        far = max(range(V), key=lambda k: dist[k])
        return far, prev, dist

    a, _, _ = bfs(0)
    b, prev, dist = bfs(a)
    path = [b]
    while path[-1] != a:
        path.append(prev[path[-1]])
    return path[len(path) // 2]


def chow_liu_tree(x: np.ndarray, num_cats, pseudocount: float = 0.1, max_rows: int | None = 20000, device=None):
    """(root, parent array with -1 at the root) of the Chow-Liu tree of x, rooted at its center.
    `device`: where the mutual information is counted (default: CUDA when available)."""
    mi = mutual_information(x, num_cats, pseudocount, max_rows, device=device)
    V = mi.shape[0]
    edges = maximum_spanning_tree(mi)
    root = tree_center(V, edges)
    adj: list[list[int]] = [[] for _ in range(V)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    parent = np.full(V, -1, dtype=np.int64)
    seen = {root}
    stack = [root]
    while stack:
        u = stack.pop()
        for w in adj[u]:
            if w not in seen:
                seen.add(w)
                parent[w] = u
                stack.append(w)
    return root, parent
