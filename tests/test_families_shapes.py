"""The families whose M-step is not a closed form: Gamma and Beta (Newton's steps on their
shapes), negative binomial (a Newton step on r per M-step, from statistics at the current r) and
Laplace (a reweighted step towards the median). Each against its formula written here with
math.lgamma, densities that integrate (or sum) to 1, EM's fixed point a stationary point of the
likelihood written here (finite differences) or the median, samples, modes, missing values, the
data and parameter checks, and the three front ends."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from pccompile.ir import DataError, ParameterError, verify

import pccompile as pc
from pccompile.learn import em_step

MIXED = """var a : real
var b : real
var c : real
var n : count
ga[2] = gamma(a, shape=[0.7, 3.0], rate=[1.0, 2.5])
lb[2] = laplace(b, loc=[-1.0, 2.0], scale=[0.5, 1.5])
bc[2] = beta(c, alpha=[0.6, 2.0], beta=[3.0, 0.8])
nn[2] = negative_binomial(n, r=[2.5, 0.6], p=[0.3, 0.8])
prod = product(ga, lb, bc, nn)
root = sum(prod, weights=[[0.35, 0.65]])
"""
COMPONENTS = [((0.7, 1.0), (-1.0, 0.5), (0.6, 3.0), (2.5, 0.3)), ((3.0, 2.5), (2.0, 1.5), (2.0, 0.8), (0.6, 0.8))]


def log_gamma_pdf(x, k, rate):
    return k * math.log(rate) - math.lgamma(k) + (k - 1) * math.log(x) - rate * x


def log_laplace_pdf(x, loc, scale):
    return -math.log(2 * scale) - abs(x - loc) / scale


def log_beta_pdf(x, a, b):
    return (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))


def log_nbinom_pmf(x, r, p):
    return math.lgamma(x + r) - math.lgamma(r) - math.lgamma(x + 1) + r * math.log(p) + x * math.log1p(-p)


def _reference(row):
    a, b, c, n = (float(v) for v in row)
    terms = [
        math.log(w) + log_gamma_pdf(a, *g) + log_laplace_pdf(b, *la) + log_beta_pdf(c, *be) + log_nbinom_pmf(n, *nb)
        for w, (g, la, be, nb) in zip((0.35, 0.65), COMPONENTS)
    ]
    return float(np.logaddexp(*terms))


def _mixed_data(rng, rows):
    return np.stack(
        [
            rng.gamma(2.0, 0.7, rows),
            rng.laplace(0.5, 1.0, rows),
            rng.beta(1.5, 2.0, rows),
            rng.negative_binomial(2, 0.3, rows),
        ],
        1,
    ).astype(np.float32)


def test_the_mixture_against_its_formula_on_every_backend(rng):
    x = _mixed_data(rng, 48)
    x[0, 3] = 900  # a count far out in the tail
    want = [_reference(r) for r in x.astype(np.float64)]
    for backend in ("torch", "cpu"):
        got = pc.compile(MIXED, backend=backend)(torch.as_tensor(x)).detach().double().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    "spec,hi",
    [
        ("gamma(a, shape=[2.5], rate=[1.5])", 60.0),
        ("gamma(a, shape=[1.0], rate=[0.8])", 60.0),
        ("laplace(a, loc=[0.4], scale=[0.7])", 30.0),
        ("beta(a, alpha=[2.0], beta=[3.5])", 1.0),
        ("beta(a, alpha=[1.3], beta=[1.2])", 1.0),
    ],
)
def test_one_density_integrates_to_one(spec, hi):
    model = pc.compile(f"var a : real\nl = {spec}\nroot = sum(l)\n", dtype=torch.float64)
    lo = -hi if spec.startswith("laplace") else 0.0
    grid = np.linspace(lo, hi, 600_001)
    p = model(torch.as_tensor(grid[:, None])).detach().exp().numpy()
    assert abs(np.trapezoid(p, grid) - 1) < 1e-3


@pytest.mark.parametrize("r,p", [(2.5, 0.3), (0.6, 0.05), (40.0, 0.9)])
def test_the_negative_binomial_sums_to_one_and_matches_its_formula(r, p):
    model = pc.compile(
        f"var n : count\nl = negative_binomial(n, r=[{r}], p=[{p}])\nroot = sum(l)\n", dtype=torch.float64
    )
    k = torch.arange(6000)[:, None]
    lp = model(k).detach().numpy()
    assert abs(np.exp(lp).sum() - 1) < 1e-6
    want = [log_nbinom_pmf(int(v), float(np.float32(r)), float(np.float32(p))) for v in (0, 3, 250)]
    np.testing.assert_allclose(lp[[0, 3, 250]], want, rtol=1e-9)


def _one_node(spec, var="real"):
    return pc.compile(f"var a : {var}\nl = {spec}\nroot = sum(l)\n", dtype=torch.float64)


def _train(model, x, epochs):
    for _ in range(epochs):
        em_step(model, *model.encode(x[:, None]), step_size=1.0, pseudocount=0.0)
    (params,) = [p for p in model.to_circuit().params.values() if "weights" not in p]
    return {k: float(v[0]) for k, v in params.items()}


def _stationary(loglik, theta: dict, h=1e-5):
    """The finite-difference gradient of the mean log-likelihood at theta, per parameter."""
    grad = {}
    for k in theta:
        up, down = dict(theta), dict(theta)
        up[k] += h
        down[k] -= h
        grad[k] = (loglik(**up) - loglik(**down)) / (2 * h)
    return grad


def test_gamma_em_reaches_a_stationary_point_of_the_likelihood(rng):
    x = rng.gamma(3.2, 0.6, 5000)
    theta = _train(_one_node("gamma(a)"), x, 2)

    def loglik(shape, rate):
        return float(np.mean(shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * np.log(x) - rate * x))

    for k, g in _stationary(loglik, theta).items():
        assert abs(g) < 1e-6, (k, g, theta)
    assert abs(theta["shape"] - 3.2) < 0.2 and abs(theta["rate"] - 1 / 0.6) < 0.1


def test_beta_em_reaches_a_stationary_point_of_the_likelihood(rng):
    x = rng.beta(0.7, 2.4, 5000)
    theta = _train(_one_node("beta(a)"), x, 2)
    xe = np.clip(x, 1e-6, 1 - 1e-6)  # the documented evaluation at the clamped ends
    lx, l1x = np.log(xe), np.log1p(-xe)

    def loglik(alpha, beta):
        return float(
            np.mean((alpha - 1) * lx + (beta - 1) * l1x)
            - (math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta))
        )

    for k, g in _stationary(loglik, theta).items():
        assert abs(g) < 1e-6, (k, g, theta)
    assert abs(theta["alpha"] - 0.7) < 0.05 and abs(theta["beta"] - 2.4) < 0.2


def test_negative_binomial_em_converges_to_a_stationary_point(rng):
    x = rng.negative_binomial(3.5, 0.25, 5000)
    model = _one_node("negative_binomial(a, r=[1.0], p=[0.5])", var="count")
    theta = _train(model, x, 25)
    values, counts = np.unique(x, return_counts=True)
    lgf = np.array([math.lgamma(v + 1) for v in values])

    def loglik(r, p):
        lg = np.array([math.lgamma(v + r) for v in values])
        return float(np.sum(counts * (lg - math.lgamma(r) - lgf + r * math.log(p) + values * math.log1p(-p))) / len(x))

    for k, g in _stationary(loglik, theta).items():
        assert abs(g) < 1e-5, (k, g, theta)
    assert abs(theta["r"] - 3.5) < 0.4


def test_laplace_em_moves_to_the_median(rng):
    x = rng.laplace(1.5, 0.8, 2001)  # odd: the median is one of the values
    theta = _train(_one_node("laplace(a)"), x, 150)
    median = float(np.median(x))
    assert abs(theta["loc"] - median) < 1e-4
    assert abs(theta["scale"] - np.abs(x - median).mean()) < 1e-4


def test_em_with_a_pseudocount_and_missing_values_keeps_valid_parameters(rng):
    model = pc.compile(MIXED, dtype=torch.float64)
    x = torch.as_tensor(_mixed_data(rng, 400)).double()
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) < 0.2] = float("nan")
    before = float(model(x).detach().mean())
    for _ in range(5):
        em_step(model, *model.encode(x), step_size=0.7, pseudocount=0.5)
    after = model(x).detach()
    assert torch.isfinite(after).all() and float(after.mean()) > before
    verify(model.to_circuit(), require_params=True)  # every parameter passes its family's check


def test_samples_and_modes_follow_the_parameters():
    def one(spec, var="real"):
        m = _one_node(spec, var)
        return m.sample(40000, seed=0).numpy()[:, 0], float(m.mpe(torch.tensor([[float("nan")]]))[0, 0])

    s, mode = one("gamma(a, shape=[3.0], rate=[2.0])")
    assert abs(s.mean() - 1.5) < 0.02 and abs(s.var() - 0.75) < 0.03 and abs(mode - 1.0) < 1e-6
    s, mode = one("gamma(a, shape=[0.4], rate=[1.0])")
    assert s.min() >= 0 and abs(s.mean() - 0.4) < 0.02 and mode == 0.0
    s, mode = one("laplace(a, loc=[-2.0], scale=[0.5])")
    assert abs(np.median(s) + 2.0) < 0.02 and abs(np.abs(s + 2).mean() - 0.5) < 0.01 and mode == -2.0
    s, mode = one("beta(a, alpha=[2.0], beta=[5.0])")
    assert 0 <= s.min() and s.max() <= 1 and abs(s.mean() - 2 / 7) < 0.005 and abs(mode - 0.2) < 1e-6
    _, mode = one("beta(a, alpha=[0.5], beta=[3.0])")
    assert mode < 1e-5  # a shape below 1: the density is largest at the end
    m = _one_node("negative_binomial(a, r=[4.0], p=[0.4])", var="count")
    s = m.sample(40000, seed=0).numpy()[:, 0]
    assert abs(s.mean() - 6.0) < 0.1 and abs(s.var() - 15.0) < 0.6
    assert int(m.mpe(torch.tensor([[-1]]))[0, 0]) == 4  # floor(3 * 0.6 / 0.4)


def test_missing_values_marginalise_and_data_outside_the_support_is_refused():
    model = pc.compile(MIXED)
    nan = float("nan")
    got = float(model(torch.tensor([[nan, nan, 0.3, nan]])).detach()[0])
    want = math.log(sum(w * math.exp(log_beta_pdf(0.3, *comp[2])) for w, comp in zip((0.35, 0.65), COMPONENTS)))
    assert abs(got - want) < 1e-5
    with pytest.raises(DataError, match=r"variable 'c' \(column 2\) has value 1.5 in row 0, outside \[0, 1\]"):
        model(torch.tensor([[1.0, 0.0, 1.5, 1.0]]))
    with pytest.raises(DataError, match=r"variable 'a' \(column 0\) has value -1.0 in row 0, outside \[0, inf\]"):
        model(torch.tensor([[-1.0, 0.0, 0.5, 1.0]]))
    with pytest.raises(DataError, match=r"variable 'n' \(column 3\) has value -3.0 in row 0; expected a count >= 0"):
        model(torch.tensor([[1.0, 0.0, 0.5, -3.0]]))
    ends = model(torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])).detach()
    assert torch.isfinite(ends).all()  # 0 and 1 are evaluated at the clamped ends


@pytest.mark.parametrize(
    "spec,message",
    [
        ("gamma(a, shape=[0.0], rate=[1.0])", "gamma shape must be finite and > 0"),
        ("laplace(a, loc=[inf], scale=[1.0])", "laplace loc must be finite"),
        ("beta(a, alpha=[1.0], beta=[-2.0])", "beta beta must be finite and > 0"),
        ("negative_binomial(a, r=[2.0], p=[1.5])", "negative_binomial p must lie in"),
    ],
)
def test_invalid_parameters_name_the_node_and_the_rule(spec, message):
    var = "count" if spec.startswith("negative") else "real"
    with pytest.raises((ParameterError, pc.DSLSemanticError), match=message):
        pc.compile(f"var a : {var}\nl = {spec}\nroot = sum(l)\n")


def test_the_builder_networkx_and_save_load_spell_them_too(tmp_path):
    b = pc.build(pc.summate(pc.multiply(pc.inputs(0, 2, pc.Gamma()), pc.inputs(1, 2, pc.Beta()))))
    assert {n.dist.name for n in b.nodes.values() if hasattr(n, "dist")} == {"gamma", "beta"}
    g = nx.DiGraph()
    g.add_node("g", type="input", var=0, dist="gamma", params=[2.0, 3.0])
    g.add_node("l", type="input", var=1, dist="laplace", params=[0.5, 2.0])
    g.add_node("n", type="input", var=2, dist="negative_binomial", params=[1.5, 0.4])
    g.add_node("p", type="product")
    g.add_node("s", type="sum")
    g.add_edge("s", "p", weight=1.0)
    g.add_edges_from([("p", "g"), ("p", "l"), ("p", "n")])
    model = pc.compile(g)
    x = torch.tensor([[0.5, 1.0, 3.0]])
    want = (
        log_gamma_pdf(0.5, 2.0, 3.0) + log_laplace_pdf(1.0, 0.5, 2.0) + log_nbinom_pmf(3, 1.5, float(np.float32(0.4)))
    )
    np.testing.assert_allclose(float(model(x).detach()[0]), want, rtol=1e-5)
    round_trip = pc.to_networkx(model.to_circuit())
    assert {d.get("dist") for _, d in round_trip.nodes(data=True)} >= {"gamma", "laplace", "negative_binomial"}
    pc.save(model, tmp_path / "m.pcz")
    assert torch.equal(pc.load(tmp_path / "m.pcz")(x), model(x))
    again = pc.compile(pc.print_circuit(model.to_circuit()))  # the DSL's spelling, printed and parsed
    assert torch.equal(again(x), model(x))
