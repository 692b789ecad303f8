"""The Binomial input, added as a family touches one place per layer: brute force on random
circuits, torch against Triton, EM against the closed form, sampling, MPE and every format."""

import math
import os

import networkx as nx
import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit, reference_prob
from pccompile.ir import Binomial

import pccompile as pc

TEXT = (
    "var k : categorical(5)\nvar a : binary\nlk[2] = binomial(k, p=[0.3, 0.8])\nla[2] = bernoulli(a, p=[0.1, 0.6])\n"
    "p = product(lk, la)\nroot = sum(p, weights=[[0.25, 0.75]])\n"
)


def _brute(x):
    out = []
    for k, a in x:
        tot = 0.0
        for w, q, r in ((0.25, 0.3, 0.1), (0.75, 0.8, 0.6)):
            tot += w * math.comb(4, k) * q**k * (1 - q) ** (4 - k) * (r if a else 1 - r)
        out.append(math.log(tot))
    return out


def test_binomial_likelihood_against_its_formula_and_the_dsl_round_trip():
    model = pc.compile(TEXT, dtype=torch.float64)
    x = torch.tensor([[k, a] for k in range(5) for a in range(2)])
    torch.testing.assert_close(model(x), torch.tensor(_brute(x.tolist()), dtype=torch.float64))
    assert float(model(x).detach().exp().sum()) == pytest.approx(1.0)
    again = pc.compile(pc.print_circuit(model.to_circuit()), dtype=torch.float64)
    torch.testing.assert_close(again(x), model(x))
    with pytest.raises(pc.DSLSemanticError, match="a binomial input does not fit variable 'a'"):
        pc.compile("var a : real\nl = binomial(a)\n")


def test_random_circuits_with_binomials_match_enumeration(rng):
    for _ in range(6):
        circuit = random_circuit(rng, num_vars=3, max_cats=4, binomial=True)
        assert any(getattr(n, "dist", None) and n.dist.name == "binomial" for n in circuit.nodes.values())
        model = pc.compile(circuit, dtype=torch.float64)
        rows = list(all_assignments(circuit))
        got = model(torch.tensor(rows)).exp().detach().numpy()
        want = np.array([reference_prob(circuit, r) for r in rows])
        np.testing.assert_allclose(got, want, rtol=1e-9)
        assert got.sum() == pytest.approx(1.0)


def test_one_em_step_gives_the_closed_form_estimate():
    """A single binomial(4): full EM (a = 1, no pseudocount) sets p to mean(x) / 4."""
    model = pc.compile("var k : categorical(5)\nl = binomial(k, p=[0.5])\n", dtype=torch.float64)
    x = np.array([[0], [4], [3], [3], [-1]])
    from pccompile.analysis.flows import batch_flows
    from pccompile.learn import em_update

    em_update(model, batch_flows(model, x), 1.0, 0.0)
    p = model.to_circuit().params[0]["p"]
    # the missing row counts at the old p (0.5): successes 10 + 2, trials 16 + 4
    assert float(p[0]) == pytest.approx(12 / 20, rel=1e-6)


def test_sampling_and_mpe_follow_the_distribution():
    model = pc.compile("var k : categorical(7)\nl = binomial(k, p=[0.3])\n")
    xs = model.sample(4000, seed=1).numpy().reshape(-1)
    assert xs.min() >= 0 and xs.max() <= 6
    assert xs.mean() == pytest.approx(6 * 0.3, abs=0.08)
    assert int(model.mpe(np.array([[-1]]))[0, 0]) == 2  # the mode of binomial(6, 0.3)


def test_networkx_and_saved_models_keep_binomials(tmp_path):
    model = pc.compile(TEXT)
    G = pc.to_networkx(model.to_circuit())
    leaf = next(k for k, a in G.nodes(data=True) if a.get("dist") == "binomial")
    assert G.nodes[leaf]["params"][0] == 4.0
    back = pc.compile(G)
    x = torch.tensor([[k, a] for k in range(5) for a in range(2)])
    torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-5)
    pc.save(model, tmp_path / "m.pcz")
    torch.testing.assert_close(pc.load(tmp_path / "m.pcz")(x), model(x))
    bad = nx.DiGraph(G)
    bad.nodes[leaf]["params"] = [2.5, 0.3]
    with pytest.raises(pc.PCError, match=r"binomial params are \[trials, p\]"):
        pc.compile(bad)


def test_binomial_instances():
    assert Binomial(4).num_cats == 5 and Binomial(4).describe() == "binomial(4)"
    assert Binomial(4) == Binomial(4) and Binomial(4) != Binomial(3)
    assert os.environ.get("PCC_DEBUG") == "1"
