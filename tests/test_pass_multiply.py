"""`multiply` of compatible circuits against brute-force enumeration (p_a p_b = Z q at every
assignment, q sums to 1), Gaussian products by quadrature, the inner product and the squared
distance against their sums, the size bound, and the refusals of incompatible pairs and of
families with no closed product."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit, reference_prob
from pccompile.ir import StructureError, verify
from pccompile.passes import log_inner_product, multiply, squared_distance

import pccompile as pc
from pccompile.structures import hclt_from_tree, hmm, rat_spn


def _init(vec, seed):
    return pc.compile(pc.to_circuit(vec), passes="init", seed=seed, dtype=torch.float64).to_circuit()


def _pairs():
    tree = np.array([-1, 0, 0, 1, 3])
    yield _init(hclt_from_tree(tree, 3, latents=2), 1), _init(hclt_from_tree(tree, 3, latents=3), 2)
    yield _init(hmm(4, 2, 3), 3), _init(hmm(4, 3, 3), 4)
    one_split = dict(depth=2, repetitions=1, num_inputs=2, seed=7)
    yield _init(rat_spn(4, 2, num_sums=2, **one_split), 5), _init(rat_spn(4, 2, num_sums=3, **one_split), 6)


def _check_product(a, b, c):
    verify(c, require_params=True)
    scale = math.exp(c.meta["log_scale"])
    total = 0.0
    for x in all_assignments(a):
        want = reference_prob(a, x) * reference_prob(b, x)
        q = reference_prob(c, x)
        assert q * scale == pytest.approx(want, rel=1e-5, abs=1e-12)
        total += q
    assert total == pytest.approx(1.0, abs=1e-6)


def test_compatible_structures_multiply_exactly():
    for a, b in _pairs():
        c = multiply(a, b)
        _check_product(a, b, c)
        ea = [int(a.edge_mask(n).sum()) for n in a.nodes.values() if n.kind == "sum"]
        eb = [int(b.edge_mask(n).sum()) for n in b.nodes.values() if n.kind == "sum"]
        ec = [int(c.edge_mask(n).sum()) for n in c.nodes.values() if n.kind == "sum"]
        assert max(ec) <= max(ea) * max(eb) and sum(ec) <= sum(ea) * sum(eb)  # |a| |b| at most
        model = pc.compile(c, dtype=torch.float64)  # the product runs as any circuit does
        x = torch.as_tensor(all_assignments(a))
        assert float(model(x).detach().exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_random_circuits_multiply_with_themselves_exactly_or_are_refused(rng):
    done = refused = 0
    for _ in range(12):
        a = random_circuit(rng, num_vars=3, binomial=False)
        try:
            c = multiply(a, a)
        except StructureError as e:
            assert "not compatible" in str(e) or "incompatible" in str(e)
            refused += 1
            continue
        _check_product(a, a, c)
        done += 1
    assert done > 0


def test_gaussian_products_integrate_to_their_scale():
    src = "var h : real\nl[2] = gaussian(h, mean=[-1.0, 2.0], std=[0.5, 1.5])\nroot = sum(l, weights=[[0.3, 0.7]])\n"
    other = "var h : real\nl[3] = gaussian(h, mean=[0.0, 1.0, 4.0], std=[1.0, 0.3, 2.0])\nroot = sum(l, weights=[[0.2, 0.5, 0.3]])\n"
    a, b = pc.to_circuit(src), pc.to_circuit(other)
    c = multiply(a, b)
    grid = np.linspace(-15, 20, 350_001)
    x = torch.as_tensor(grid[:, None])

    def density(circuit):
        return pc.compile(circuit, dtype=torch.float64)(x).detach().exp().numpy()

    want = density(a) * density(b)
    got = density(c) * math.exp(c.meta["log_scale"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    assert math.exp(log_inner_product(a, b)) == pytest.approx(np.trapezoid(want, grid), rel=1e-6)


def test_the_inner_product_and_the_squared_distance_against_their_sums():
    a, b = next(_pairs())
    xs = all_assignments(a)
    inner = sum(reference_prob(a, x) * reference_prob(b, x) for x in xs)
    assert log_inner_product(a, b) == pytest.approx(math.log(inner), abs=1e-6)
    dist = sum((reference_prob(a, x) - reference_prob(b, x)) ** 2 for x in xs)
    assert squared_distance(a, b) == pytest.approx(dist, rel=1e-5)
    assert squared_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_incompatible_pairs_name_the_first_product_that_splits_differently():
    a = _init(hclt_from_tree(np.array([-1, 0, 1]), 2, latents=2), 1)  # a chain 0 - 1 - 2
    b = _init(hclt_from_tree(np.array([1, -1, 1]), 2, latents=2), 2)  # a star around 1
    with pytest.raises(StructureError, match="split their variables differently .* not compatible"):
        multiply(a, b)
    with pytest.raises(StructureError, match="over the same variables"):
        multiply(a, _init(hclt_from_tree(np.array([-1, 0]), 2, latents=2), 3))
    counts = pc.compile(
        "var k : count\nl[2] = poisson(k, rate=[0.2, 7.0])\nroot = sum(l)\n", passes="init"
    ).to_circuit()
    with pytest.raises(StructureError, match=r"no closed form for the product of a poisson input \('l'\)"):
        multiply(counts, counts)


def test_tables_of_values_multiply_across_families():
    """Bernoulli, categorical and binomial inputs over one variable multiply as tables."""
    a = pc.compile("var k : categorical(4)\nl[2] = binomial(k, p=[0.2, 0.7])\nroot = sum(l)\n", passes="init")
    b = pc.compile("var k : categorical(4)\nl[2] = categorical(k)\nroot = sum(l)\n", passes="init")
    a, b = a.to_circuit(), b.to_circuit()
    with pytest.raises(pc.PCError, match="parameters are missing"):
        multiply(pc.to_circuit("var k : categorical(4)\nl[2] = categorical(k)\nroot = sum(l)\n"), b)
    _check_product(a, b, multiply(a, b))
