"""The input-family registry and the families on real variables with a restricted support
(exponential, log-normal): each part against its formula written here in numpy, densities that
integrate to 1, EM's fixed point against the closed-form MLE, samples, modes, missing values, the
data check, the three front ends, and the CPU target and Triton kernels against the torch backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest
import torch
from pccompile.ir import FAMILIES, DataError, Exponential
from pccompile.ir.families import Family, register
from pccompile.ir.families.registry import REQUIRED_PARTS, missing_parts

import pccompile as pc


def test_every_registered_family_gives_every_part_and_is_exported():
    for cls in FAMILIES:
        assert missing_parts(cls) == [], cls
        assert getattr(pc, cls.__name__) is cls  # the facade derives its exports from the registry
    assert {"Binomial", "Exponential", "LogNormal"} <= set(pc.__all__)


@pytest.mark.parametrize("part", REQUIRED_PARTS)
def test_a_family_without_a_part_is_refused_when_registered(part):
    body = {p: getattr(Exponential, p) for p in REQUIRED_PARTS if p != part}
    body["from_nx"] = classmethod(Exponential.from_nx.__func__) if part != "from_nx" else None
    body = {k: v for k, v in body.items() if v is not None}
    cls = dataclass(frozen=True)(type("Broken", (Family,), {"name": f"broken_{part}", **body, "__module__": __name__}))
    cls.triton_snippet, cls.triton_doc = Exponential.triton_snippet, Exponential.triton_doc
    with pytest.raises(TypeError, match=f"family 'broken_{part}' lacks {part}"):
        register(cls)


TWO = """var a : real
var b : real
ea[2] = exponential(a, rate=[0.5, 3.0])
lb[2] = lognormal(b, mu=[0.0, 1.0], sigma=[0.5, 2.0])
c = product(ea, lb)
root = sum(c, weights=[[0.3, 0.7]])
"""


def _exp_pdf(x, rate):
    return np.where(x >= 0, rate * np.exp(-rate * np.maximum(x, 0)), 0.0)


def _lognormal_pdf(x, mu, sigma):
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(x) - mu) / sigma
        return np.where(x > 0, np.exp(-0.5 * z * z) / (x * sigma * math.sqrt(2 * math.pi)), 0.0)


def _reference(x):
    a, b = x[:, 0], x[:, 1]
    comps = [_exp_pdf(a, r) * _lognormal_pdf(b, m, s) for r, m, s in ((0.5, 0.0, 0.5), (3.0, 1.0, 2.0))]
    return np.log(0.3 * comps[0] + 0.7 * comps[1])


def test_the_mixture_against_its_formula_on_every_backend(rng):
    x = np.stack([rng.exponential(1.0, 64), rng.lognormal(0.0, 1.0, 64)], 1).astype(np.float32)
    want = _reference(x.astype(np.float64))
    for backend in ("torch", "cpu"):
        got = pc.compile(TWO, backend=backend)(torch.as_tensor(x)).detach().double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_missing_values_marginalise_and_values_outside_the_support_are_refused():
    model = pc.compile(TWO)
    nan = float("nan")
    got = model(torch.tensor([[0.7, nan], [nan, nan]])).detach().double().numpy()
    np.testing.assert_allclose(got[0], math.log(0.3 * _exp_pdf(0.7, 0.5) + 0.7 * _exp_pdf(0.7, 3.0)), rtol=1e-5)
    np.testing.assert_allclose(got[1], 0.0, atol=1e-6)
    with pytest.raises(DataError, match=r"variable 'a' \(column 0\) has value -0.25 in row 1, outside \[0, inf\]"):
        model(torch.tensor([[1.0, 1.0], [-0.25, 1.0]]))
    with pytest.raises(DataError, match=r"variable 'b' \(column 1\) has value -3.0 in row 0"):
        model(torch.tensor([[1.0, -3.0]]))
    assert float(model(torch.tensor([[1.0, 0.0]])).detach()[0]) == float("-inf")  # in the support's closure: density 0


@pytest.mark.parametrize("spec", ["exponential(a, rate=[1.7])", "lognormal(a, mu=[0.3], sigma=[0.6])"])
def test_one_density_integrates_to_one(spec):
    model = pc.compile(f"var a : real\nl = {spec}\nroot = sum(l)\n", dtype=torch.float64)
    grid = np.linspace(0, 60, 600_001)
    p = model(torch.as_tensor(grid[:, None])).detach().exp().numpy()
    assert abs(np.trapezoid(p, grid) - 1) < 1e-3


def _one_node_em(spec, x, epochs=3):
    model = pc.compile(f"var a : real\nl = {spec}\nroot = sum(l)\n", dtype=torch.float64)
    from pccompile.learn import em_step

    for _ in range(epochs):
        em_step(model, *model.encode(x[:, None]), step_size=1.0, pseudocount=0.0)
    return model.to_circuit()


def test_em_reaches_the_closed_form_mle(rng):
    x = rng.gamma(2.0, 1.5, 4000)
    c = _one_node_em("exponential(a)", x)
    (rate,) = [p["rate"] for p in c.params.values() if "rate" in p]
    np.testing.assert_allclose(rate, [1 / x.mean()], rtol=1e-6)
    c = _one_node_em("lognormal(a)", x)
    (p,) = [p for p in c.params.values() if "mu" in p]
    np.testing.assert_allclose(p["mu"], [np.log(x).mean()], rtol=1e-6)
    np.testing.assert_allclose(p["sigma"], [np.log(x).std()], rtol=1e-5)


def test_samples_and_modes_follow_the_parameters():
    exp = pc.compile("var a : real\nl = exponential(a, rate=[4.0])\nroot = sum(l)\n")
    s = exp.sample(20000, seed=0).numpy()[:, 0]
    assert s.min() >= 0 and abs(s.mean() - 0.25) < 0.01
    ln = pc.compile("var a : real\nl = lognormal(a, mu=[0.5], sigma=[0.4])\nroot = sum(l)\n")
    s = ln.sample(20000, seed=0).numpy()[:, 0]
    assert abs(np.log(s).mean() - 0.5) < 0.01 and abs(np.log(s).std() - 0.4) < 0.01
    x = ln.mpe(torch.tensor([[float("nan")]]))
    np.testing.assert_allclose(float(x[0, 0]), math.exp(0.5 - 0.16), rtol=1e-5)  # the density's mode
    x = exp.mpe(torch.tensor([[float("nan")]]))
    assert float(x[0, 0]) == 0.0


def test_the_builder_and_networkx_spell_them_too():
    b = pc.build(pc.summate(pc.multiply(pc.inputs(0, 2, pc.Exponential()), pc.inputs(1, 2, pc.LogNormal()))))
    assert {n.dist.name for n in b.nodes.values() if hasattr(n, "dist")} == {"exponential", "lognormal"}
    g = nx.DiGraph()
    g.add_node("e", type="input", var=0, dist="exponential", params=[2.0])
    g.add_node("l", type="input", var=1, dist="lognormal", params=[0.0, 1.0])
    g.add_node("p", type="product")
    g.add_node("s", type="sum")
    g.add_edge("s", "p", weight=1.0)
    g.add_edges_from([("p", "e"), ("p", "l")])
    got = float(pc.compile(g)(torch.tensor([[0.5, 1.0]])).detach()[0])
    np.testing.assert_allclose(got, math.log(_exp_pdf(0.5, 2.0) * _lognormal_pdf(1.0, 0.0, 1.0)), rtol=1e-5)
    round_trip = pc.to_networkx(pc.compile(g).to_circuit())
    assert {d.get("dist") for _, d in round_trip.nodes(data=True)} >= {"exponential", "lognormal"}


COUNTS = """var n : count
var m : count
pn[2] = poisson(n, rate=[0.5, 7.0])
gm[2] = geometric(m, p=[0.3, 0.8])
c = product(pn, gm)
root = sum(c, weights=[[0.4, 0.6]])
"""


def _count_reference(n, m):
    def log_poisson(r):
        return n * math.log(r) - r - math.lgamma(n + 1)

    def log_geometric(p):
        return math.log(p) + m * math.log(1 - p)

    return float(
        np.logaddexp(
            math.log(0.4) + log_poisson(0.5) + log_geometric(0.3), math.log(0.6) + log_poisson(7.0) + log_geometric(0.8)
        )
    )


def test_count_families_against_their_formulas_on_every_backend(rng):
    x = np.stack([rng.poisson(4.0, 40), rng.geometric(0.4, 40) - 1], 1)
    x[0] = [500, 0]  # far beyond any category count: counts have no upper bound
    want = [_count_reference(int(a), int(b)) for a, b in x]
    for backend in ("torch", "cpu"):
        got = pc.compile(COUNTS, backend=backend)(torch.as_tensor(x)).detach().double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_count_distributions_sum_to_one_and_missing_counts_marginalise():
    model = pc.compile(COUNTS, dtype=torch.float64)
    n = torch.arange(400)
    grid = torch.stack([n.repeat_interleave(400), n.repeat(400)], 1)
    assert abs(float(model(grid).detach().exp().sum()) - 1) < 1e-9
    got = float(model(torch.tensor([[3, -1]])).detach()[0])
    want = math.log(sum(w * math.exp(3 * math.log(r) - r - math.lgamma(4)) for w, r in ((0.4, 0.5), (0.6, 7.0))))
    assert abs(got - want) < 1e-6  # the rate 7 is stored as float32


def test_count_data_is_checked_and_the_domain_is_enforced():
    model = pc.compile(COUNTS)
    with pytest.raises(DataError, match=r"variable 'n' \(column 0\) has value -2 in row 1; expected a count >= 0"):
        model(torch.tensor([[1, 1], [-2, 0]]))
    with pytest.raises(DataError, match="variable 'm' .* has value 1.5 in row 0, which is not an integer"):
        model(torch.tensor([[1.0, 1.5]]))
    with pytest.raises(pc.DSLSemanticError, match="a poisson input does not fit variable 'a' of domain binary"):
        pc.compile("var a : binary\nl = poisson(a)\nroot = sum(l)\n")
    with pytest.raises(pc.DSLSemanticError, match="a gaussian input does not fit variable 'n' of domain count"):
        pc.compile("var n : count\nl = gaussian(n)\nroot = sum(l)\n")


def test_count_em_reaches_the_closed_form_mle_and_samples_follow(rng, tmp_path):
    x = rng.negative_binomial(3, 0.4, size=(5000, 1))
    model = pc.compile("var n : count\na = poisson(n)\nb = geometric(n)\nroot = sum(a)\n", dtype=torch.float64)
    from pccompile.learn import em_step

    for _ in range(2):
        em_step(model, *model.encode(x), step_size=1.0, pseudocount=0.0)
    (rate,) = [p["rate"] for p in model.to_circuit().params.values() if "rate" in p]
    np.testing.assert_allclose(rate, [x.mean()], rtol=1e-6)
    geo = pc.compile("var n : count\nl = geometric(n)\nroot = sum(l)\n", dtype=torch.float64)
    for _ in range(2):
        em_step(geo, *geo.encode(x), step_size=1.0, pseudocount=0.0)
    (p,) = [p["p"] for p in geo.to_circuit().params.values() if "p" in p]
    np.testing.assert_allclose(p, [1 / (1 + x.mean())], rtol=1e-6)
    s = geo.sample(20000, seed=1).numpy()[:, 0]
    assert abs(s.mean() - x.mean()) < 0.05 * x.mean()
    assert int(geo.mpe(torch.tensor([[-1]]))[0, 0]) == 0
    pc.save(geo, tmp_path / "g.pcz")
    assert torch.equal(pc.load(tmp_path / "g.pcz")(torch.as_tensor(x[:50])), geo(torch.as_tensor(x[:50])))
