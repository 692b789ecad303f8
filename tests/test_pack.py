"""Lowering: partition DP, padding within tolerance, Program invariants."""

import numpy as np
import pytest
from helpers import random_circuit
from pccompile.ir.verify_program import verify_program
from pccompile.passes import InitParams, PackOptions, layer, pack, plan_partitions


def _brute_min_parts(fan, wts, tol):
    """Smallest number of contiguous (sorted) partitions within tolerance, by trying all splits."""
    import itertools

    vals = np.unique(fan)
    real = (fan * wts).sum()
    for k in range(1, len(vals) + 1):
        for cuts in itertools.combinations(range(1, len(vals)), k - 1):
            bounds = [0, *cuts, len(vals)]
            cost = sum(
                wts[(fan >= vals[a]) & (fan <= vals[b - 1])].sum() * vals[b - 1] for a, b in zip(bounds, bounds[1:])
            )
            if cost <= (1 + tol) * real + 1e-9:
                return k
    return len(vals)


@pytest.mark.parametrize("trial", range(20))
def test_partition_dp_is_minimal_and_within_tolerance(rng, trial):
    n = int(rng.integers(1, 40))
    fan = rng.integers(1, 30, size=n)
    wts = rng.integers(1, 5, size=n).astype(float)
    tol = float(rng.choice([0.0, 0.1, 0.5, 1.0]))
    parts = plan_partitions(fan, wts, tol, max_partitions=64)
    covered = np.sort(np.concatenate([idx for _, idx in parts]))
    np.testing.assert_array_equal(covered, np.arange(n))
    padded = sum(cap * wts[idx].sum() for cap, idx in parts)
    assert all(cap >= fan[idx].max() for cap, idx in parts)
    assert padded <= (1 + tol) * (fan * wts).sum() + 1e-9
    assert len(parts) == _brute_min_parts(fan, wts, tol)


def test_partition_cap_and_pow2():
    fan = np.array([1, 2, 3, 5, 9, 17, 33])
    parts = plan_partitions(fan, np.ones(7), 0.0, max_partitions=3, pow2=True)
    assert len(parts) == 3
    assert all(cap & (cap - 1) == 0 for cap, _ in parts)


@pytest.mark.parametrize("trial", range(8))
def test_program_invariants(rng, trial):
    c = random_circuit(rng, num_vars=int(rng.integers(2, 7)))
    prog = pack(
        c, layer(c), PackOptions(tolerance=float(rng.choice([0.0, 0.5])), read_cost=float(rng.choice([0.0, 64.0])))
    )
    verify_program(prog)  # every row written once, children first, padding unweighted, all weights used
    assert "layer" in str(prog)


def _packed_sum(rng, density, block, mask=None, **options):
    """A 256-node sum over 128 children with a random mask in block x block blocks (every row keeps
    one edge at least): (padded slots the kernels process, kept edges, the sum layer)."""
    from pccompile.passes import lower

    import pccompile as pc

    kids = [pc.inputs(v, 128, pc.Bernoulli()) for v in range(2)]
    n, K = 256, 128
    if mask is None:
        pattern = rng.random((n // block, K // block)) < density
        pattern[np.arange(n // block), rng.integers(0, K // block, n // block)] = True
        mask = np.kron(pattern, np.ones((block, block), bool))
    s = pc.summate(pc.multiply(*kids), size=n, mask=mask)
    circuit = InitParams(seed=0).run(pc.build(pc.summate(s, size=1)))
    prog = lower(circuit, PackOptions(tolerance=0.5, **options))
    sum_layer = [lay for lay in prog.layers if lay.kind == "sum"][0]
    return sum(int(np.prod(p.shape)) for p in sum_layer.partitions), int(mask.sum()), sum_layer


@pytest.mark.parametrize("density", [0.1, 0.05, 0.0])
def test_block_sparse_sums_cost_their_kept_edges_in_matrix_groups(rng, density):
    slots, kept, layer_ = _packed_sum(rng, density, block=16)
    assert slots <= 1.5 * kept + 1e-9, (density, slots, kept)
    assert min(p.shape[1] for p in layer_.partitions) >= 16  # groups of >= 16 rows: tl.dot tiles


@pytest.mark.parametrize("density", [0.4, 0.2, 0.05])
def test_per_edge_sparse_sums_cost_their_kept_edges_when_rows_are_cheap(rng, density):
    # no read cost and no penalty for small groups: splitting into rows always wins
    slots, kept, _ = _packed_sum(rng, density, block=1, read_cost=0.0, scalar_mac_cost=1.0)
    assert slots <= 1.5 * kept + 1e-9, (density, slots, kept)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.1])
def test_column_pruned_sums_cost_falls_with_their_kept_children(rng, fraction):
    # children pruned for every row (plus random per-edge holes): one matrix-unit group over the
    # children still in use, so the edges processed fall with the children kept
    cols = rng.random(128) < fraction
    cols[rng.integers(128)] = True
    mask = cols[None, :] & (rng.random((256, 128)) < 0.9)
    mask[np.arange(256), rng.choice(np.flatnonzero(cols), 256)] = True
    slots, kept, layer_ = _packed_sum(rng, 0, 1, mask=mask)
    assert [p.shape for p in layer_.partitions] == [(1, 256, int(cols.sum()))]
    assert slots <= kept / 0.85


def test_sparse_sums_choose_by_the_cost_model(rng):
    # default costs: a 40% per-edge mask, or 40% of 16x16 blocks, stays one matrix-unit group over
    # all children; a mask with one edge per row (0.8%) splits into per-pattern groups
    for block in (1, 16):
        slots, kept, layer_ = _packed_sum(rng, 0.4, block=block)
        assert slots == 256 * 128 and [p.shape for p in layer_.partitions] == [(1, 256, 128)]
    slots, kept, _ = _packed_sum(rng, 0.0, block=1)
    assert kept == 256 and slots <= 1.5 * kept
    # and the choice follows the prices: with free reads, the 40% block mask splits
    slots, kept, _ = _packed_sum(rng, 0.4, block=16, read_cost=0.0)
    assert slots <= 1.5 * kept
