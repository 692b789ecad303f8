"""Pairwise mutual information and the Chow-Liu tree (maximum spanning tree of MI)."""

from __future__ import annotations

import numpy as np


def mutual_information(x: np.ndarray, num_cats: np.ndarray | int, pseudocount: float = 0.1,
                       max_rows: int | None = 20000, seed: int = 0) -> np.ndarray:
    """MI [V, V] of discrete data x [N, V] (values 0..K-1; -1 missing rows are dropped per pair
    by treating missing as absent from the counts)."""
    x = np.asarray(x)
    if max_rows is not None and x.shape[0] > max_rows:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)]
    N, V = x.shape
    cats = np.broadcast_to(np.asarray(num_cats), (V,)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(cats)])
    onehot = np.zeros((N, int(offsets[-1])), dtype=np.float32)
    rows = np.repeat(np.arange(N), V)
    cols = (offsets[:-1] + np.clip(x, 0, None)).reshape(-1)
    ok = (x >= 0).reshape(-1)
    onehot[rows[ok], cols[ok]] = 1.0
    joint = onehot.T @ onehot  # [sumK, sumK] co-occurrence counts
    if np.all(cats == cats[0]):  # one vectorised pass for the common case
        K = int(cats[0])
        J = joint.reshape(V, K, V, K).transpose(0, 2, 1, 3).astype(np.float64) + pseudocount / (K * K)
        P = J / J.sum((2, 3), keepdims=True)
        mi = (P * (np.log(P) - np.log(P.sum(3, keepdims=True)) - np.log(P.sum(2, keepdims=True)))).sum((2, 3))
        np.fill_diagonal(mi, 0.0)
        return mi
    mi = np.zeros((V, V))
    for i in range(V):
        a = slice(offsets[i], offsets[i + 1])
        for j in range(i + 1, V):
            b = slice(offsets[j], offsets[j + 1])
            pij = joint[a, b].astype(np.float64) + pseudocount / (cats[i] * cats[j])
            pij = pij / pij.sum()
            pi, pj = pij.sum(1, keepdims=True), pij.sum(0, keepdims=True)
            mi[i, j] = mi[j, i] = float((pij * (np.log(pij) - np.log(pi) - np.log(pj))).sum())
    return mi


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


def chow_liu_tree(x: np.ndarray, num_cats, pseudocount: float = 0.1, max_rows: int | None = 20000):
    """(root, parent array with -1 at the root) of the Chow-Liu tree of x, rooted at its center."""
    mi = mutual_information(x, num_cats, pseudocount, max_rows)
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
