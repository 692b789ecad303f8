"""Pairwise mutual information and the Chow-Liu tree (maximum spanning tree of MI)."""

from __future__ import annotations

import heapq

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


def top_spanning_trees(weights: np.ndarray, k: int) -> list[list[tuple[int, int]]]:
    """The k spanning trees of largest total weight, best first (fewer if the graph has fewer),
    by Lawler-Murty partitioning: after a tree T of the subspace (must include I, must avoid X)
    is taken, its free edges e_1..e_m split the rest of the subspace into (I + e_1..e_{j-1},
    X + e_j), j = 1..m. In a matroid, the best basis of such a part is T - e_j + f for the
    heaviest allowed edge f across the cut that removing e_j makes, so each part costs one
    scan of the cut instead of a spanning-tree search."""
    V = weights.shape[0]
    first = maximum_spanning_tree(weights)
    if k < 1 or V <= 1:
        return [first] if k >= 1 else []
    w = np.asarray(weights, dtype=np.float64)
    taken: list[tuple[list[tuple[int, int]], frozenset, frozenset]] = []
    heap = [(-_tree_weight(w, first), 0, first, frozenset(), frozenset())]
    tick = 1
    while heap and len(taken) < k:
        _, _, tree, inc, exc = heapq.heappop(heap)
        taken.append((tree, inc, exc))
        if len(taken) == k:
            break
        free = [e for e in tree if _key(e) not in inc]
        base = _tree_weight(w, tree)
        for j, e in enumerate(free):
            exc_j = exc | {_key(e)}
            swap = _best_swap(w, V, tree, e, exc_j)
            if swap is None:
                continue
            f, gain = swap
            new = [x for x in tree if x != e] + [f]
            inc_j = inc | {_key(x) for x in free[:j]}
            heapq.heappush(heap, (-(base + gain), tick, new, inc_j, exc_j))
            tick += 1
    return [t for t, _, _ in taken]


def _key(e: tuple[int, int]) -> tuple[int, int]:
    return (min(e), max(e))


def _tree_weight(w: np.ndarray, edges: list[tuple[int, int]]) -> float:
    return float(sum(w[a, b] for a, b in edges))


def _best_swap(w, V, tree, removed, excluded) -> tuple[tuple[int, int], float] | None:
    """The heaviest edge f (not excluded, not `removed`) reconnecting tree - removed, and the
    change of total weight w(f) - w(removed); None when no allowed edge crosses the cut."""
    adj: list[list[int]] = [[] for _ in range(V)]
    for a, b in tree:
        if (a, b) != removed:
            adj[a].append(b)
            adj[b].append(a)
    side = np.zeros(V, bool)
    side[removed[0]] = True
    stack = [removed[0]]
    while stack:
        u = stack.pop()
        for x in adj[u]:
            if not side[x]:
                side[x] = True
                stack.append(x)
    a_nodes, b_nodes = np.flatnonzero(side), np.flatnonzero(~side)
    if len(a_nodes) > len(b_nodes):
        a_nodes, b_nodes = b_nodes, a_nodes
    cut = w[np.ix_(a_nodes, b_nodes)].copy()
    pos_a = {int(v): i for i, v in enumerate(a_nodes)}
    pos_b = {int(v): i for i, v in enumerate(b_nodes)}
    for u, v in list(excluded) + [_key(removed)]:
        for p, q in ((u, v), (v, u)):
            if p in pos_a and q in pos_b:
                cut[pos_a[p], pos_b[q]] = -np.inf
    best = int(np.argmax(cut))
    i, j = divmod(best, cut.shape[1])
    if not np.isfinite(cut[i, j]):
        return None
    f = (int(a_nodes[i]), int(b_nodes[j]))
    return f, float(cut[i, j] - w[removed[0], removed[1]])


def rooted(V: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Parent array (-1 at the root) of a spanning tree, rooted at its center."""
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
    return parent


def chow_liu_tree(x: np.ndarray, num_cats, pseudocount: float = 0.1, max_rows: int | None = 20000, device=None):
    """(root, parent array with -1 at the root) of the Chow-Liu tree of x, rooted at its center.
    `device`: where the mutual information is counted (default: CUDA when available)."""
    mi = mutual_information(x, num_cats, pseudocount, max_rows, device=device)
    parent = rooted(mi.shape[0], maximum_spanning_tree(mi))
    return int(np.flatnonzero(parent < 0)[0]), parent


def chow_liu_trees(
    x: np.ndarray, num_cats, trees: int, candidates: int, pseudocount: float = 0.1, max_rows: int | None = 20000
) -> list[np.ndarray]:
    """Parent arrays of `trees` spanning trees picked at even intervals from the `candidates`
    heaviest in mutual information, the Chow-Liu tree first (as the official code of "Tractable
    Regularization of Probabilistic Circuits" picks 4 of 20): diverse trees for a mixture."""
    mi = mutual_information(x, num_cats, pseudocount, max_rows)
    found = top_spanning_trees(mi, max(trees, candidates))
    picks = np.round(np.linspace(0, len(found) - 1, trees)).astype(int)  # repeats if the graph has few trees
    return [rooted(mi.shape[0], found[i]) for i in picks]
