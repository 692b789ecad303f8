"""Signed circuits against float64 enumeration: signed evaluation (cancellations to zero
included), the square's integral from the Gram recursion and from `square`, marginals,
Gaussian squares by quadrature, exact sampling, training by Adam, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import all_assignments, random_circuit
from pccompile.ir import ArgumentError, Circuit, InputNode, ParameterError, StructureError, SumNode, Variable, verify
from pccompile.ir.distributions import BINARY, REAL
from pccompile.passes import multiply, square

import pccompile as pc
from pccompile.signed import SignedCircuit, fit, mean_log_prob, sample
from pccompile.signed.program import _SignedPass
from pccompile.structures import hclt_from_tree, hmm, rat_spn


def _init(vec, seed):
    return pc.compile(pc.to_circuit(vec), passes="init", seed=seed, dtype=torch.float64).to_circuit()


def _signed(c: Circuit, rng) -> Circuit:
    """c with every sum weight given a random sign and scale: a signed circuit."""
    params = {k: dict(v) for k, v in c.params.items()}
    for n in c.nodes.values():
        if isinstance(n, SumNode) and n.tie is None:
            w = np.asarray(params[n.id]["weights"], np.float64)
            signs = rng.choice([-1.0, 1.0], size=w.shape)
            params[n.id]["weights"] = (w * signs * rng.uniform(0.5, 2.0, w.shape)).astype(np.float32)
    return Circuit(c.variables, c.nodes, c.root, params, {**c.meta, "signed": True}, c.regions)


def _direct(c: Circuit, row) -> float:
    """c(row) in float64 linear space, sum weights as stored (a signed circuit's are not
    normalised), input tables normalised."""
    vals = {}
    for nid, n in c.nodes.items():
        p = c.params.get(nid, {})
        if isinstance(n, InputNode):
            v = row[n.var]
            if n.dist.name == "categorical":
                probs = np.asarray(p["probs"], np.float64)  # float32 rows sum to 1 to ~1e-7
                vals[nid] = (probs / probs.sum(1, keepdims=True))[:, int(v)]
            elif n.dist.name == "bernoulli":
                q = np.asarray(p["p"], np.float64)
                vals[nid] = q if int(v) == 1 else 1 - q
            else:
                mu, sd = np.asarray(p["mean"], np.float64), np.asarray(p["std"], np.float64)
                vals[nid] = np.exp(-0.5 * ((v - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        elif n.kind == "product":
            out = np.ones(n.size)
            for k, ch in enumerate(n.children):
                out = out * vals[ch][n.child_rows(k)]
            vals[nid] = out
        else:
            w = np.asarray(c.params[c.param_source(n).id]["weights"], np.float64)
            vals[nid] = np.where(c.edge_mask(n), w, 0.0) @ np.concatenate([vals[ch] for ch in n.children])
    return float(vals[c.root][0])


def _compatible(rng):
    tree = np.array([-1, 0, 0, 1, 3])
    yield _signed(_init(hclt_from_tree(tree, 3, latents=3), 1), rng)
    yield _signed(_init(hmm(4, 3, 3), 2), rng)
    yield _signed(_init(rat_spn(4, 2, num_sums=3, depth=2, repetitions=1, num_inputs=2, seed=7), 3), rng)


def _values(model, rows):
    la, sg = model.signed_values(torch.tensor(rows, dtype=torch.float64))
    return (sg * la.exp()).detach().cpu().numpy()


def test_signed_evaluation_matches_float64_on_random_circuits(rng):
    for _ in range(10):
        c = _signed(random_circuit(rng, int(rng.integers(2, 5))), rng)
        model = SignedCircuit(c, dtype=torch.float64)
        rows = all_assignments(c)
        want = np.array([_direct(c, r) for r in rows])
        assert np.any(want < 0)  # the signs matter
        np.testing.assert_allclose(_values(model, rows), want, rtol=1e-6, atol=1e-12)


def test_the_hand_written_backward_matches_finite_differences(rng):
    """Gradients of log|c| w.r.t. the input rows' log-values and the flat weights, on random
    signed circuits with masks, ties and indexed products, against torch.autograd.gradcheck."""
    for _ in range(4):
        c = _signed(random_circuit(rng, int(rng.integers(2, 5))), rng)
        prog = SignedCircuit(c, dtype=torch.float64).program
        x = torch.tensor(all_assignments(c)[:6], dtype=torch.float64)
        logp = prog.input_log_probs(*prog.encode(x)).detach().requires_grad_(True)
        flat = prog.weights.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, w: _SignedPass.apply(a, w, prog)[0], (logp, flat))


@pytest.mark.parametrize("target", ["cpu", "torch"])
def test_both_targets_write_every_row_and_agree(rng, monkeypatch, target):
    """The CPU target's signed kernels and the torch pass, over buffers poisoned with NaN, on
    random signed circuits: the same values and signs, against float64 enumeration too."""
    from pccompile.codegen.cpu.build import compiler

    if target == "cpu" and compiler() is None:
        pytest.skip("no C compiler here")
    monkeypatch.setattr("pccompile.signed.program.SignedProgram.poison", True)
    for _ in range(8):
        c = _signed(random_circuit(rng, int(rng.integers(2, 5))), rng)
        rows = all_assignments(c)
        got = _values(SignedCircuit(c, target=target), rows)
        np.testing.assert_allclose(got, [_direct(c, r) for r in rows], rtol=2e-4, atol=1e-7)


def test_without_a_compiler_auto_falls_back_and_cpu_says_why(rng, monkeypatch):
    c = next(_compatible(rng))
    rows = all_assignments(c)
    want = _values(SignedCircuit(c, target="torch"), rows)
    monkeypatch.setattr("pccompile.codegen.cpu.build.build_error", lambda: "no C compiler found")
    np.testing.assert_allclose(_values(SignedCircuit(c), rows), want, rtol=1e-6)
    with pytest.raises(RuntimeError, match="target 'cpu': no C compiler found"):
        SignedCircuit(c, target="cpu").signed_values(torch.tensor(rows, dtype=torch.float32))


def test_cancellations_give_exact_zeros():
    """c = b1 - b2 for two Bernoulli inputs: zero where they agree, +-0.4 where they do not."""
    variables = (Variable("a", BINARY),)
    ber = pc.Bernoulli()
    nodes = {
        0: InputNode(0, "p", 0, 1, ber),
        1: InputNode(1, "q", 0, 1, ber),
        2: SumNode(2, "root", (0, 1), 1),
    }
    for q, want in ((0.3, [0.0, 0.0]), (0.7, [0.4, -0.4])):
        params = {0: {"p": np.array([0.3], np.float32)}, 1: {"p": np.array([q], np.float32)}}
        params[2] = {"weights": np.array([[1.0, -1.0]], np.float32)}
        c = Circuit(variables, nodes, 2, params, {"signed": True})
        la, sg = SignedCircuit(c, dtype=torch.float64).signed_values(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
        np.testing.assert_allclose((sg * la.exp()).detach().numpy(), want, atol=1e-7)
        if q == 0.3:
            assert torch.all(la == -torch.inf) and torch.all(sg == 0)
            la, sg = SignedCircuit(c).signed_values(torch.tensor([[0.0], [1.0]]))  # float32: the CPU kernels
            assert torch.all(la == -torch.inf) and torch.all(sg == 0)


def test_the_square_integrates_to_one_and_equals_c_squared(rng):
    for c in _compatible(rng):
        model = SignedCircuit(c, dtype=torch.float64)
        rows = all_assignments(c)
        want = np.array([_direct(c, r) for r in rows]) ** 2
        z = want.sum()
        assert float(model.log_norm().detach()) == pytest.approx(math.log(z), rel=1e-9)
        p = model.log_prob(torch.tensor(rows, dtype=torch.float64)).exp().detach().numpy()
        np.testing.assert_allclose(p, want / z, rtol=1e-6)
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        q = square(c)  # the IR pass: c * c over the pairs, normalised by its own integral
        verify(q, require_params=True)
        assert q.meta["signed"] is True
        assert q.meta["log_scale"] == pytest.approx(math.log(z), rel=1e-6)
        np.testing.assert_allclose([_direct(q, r) for r in rows], want / z, rtol=2e-5, atol=1e-9)


def test_marginals_of_the_square_are_sums_of_its_values(rng):
    for c in _compatible(rng):
        model = SignedCircuit(c, dtype=torch.float64)
        rows = np.array(all_assignments(c))
        p = np.array([_direct(c, r) for r in rows]) ** 2
        p /= p.sum()
        for drop in ([0], [1, 3]):
            x = torch.tensor(rows, dtype=torch.float64)
            x[:, drop] = float("nan")
            keep = [v for v in range(rows.shape[1]) if v not in drop]
            want = [p[(rows[:, keep] == r[keep]).all(1)].sum() for r in rows]
            np.testing.assert_allclose(model.log_prob(x).exp().detach().numpy(), want, rtol=1e-6)
            assert mean_log_prob(model, x, batch_size=7) == pytest.approx(float(np.log(want).mean()), rel=1e-9)


def _subtractive_gaussians() -> Circuit:
    """A subtractive mixture of three 2-D Gaussian products."""
    b = pc.builder
    x = b.inputs(0, 3, pc.Gaussian(), mean=[-1.0, 0.0, 1.5], std=[1.0, 0.5, 0.7])
    y = b.inputs(1, 3, pc.Gaussian(), mean=[0.0, 0.3, -1.0], std=[0.8, 1.2, 0.6])
    root = b.summate(b.multiply(x, y), size=1, weights=[[1.0, -0.8, 0.5]])
    return pc.build(root, [Variable("x", REAL), Variable("y", REAL)], meta={"signed": True})


def test_gaussian_squares_integrate_by_quadrature():
    """Z and the density on a grid."""
    c = _subtractive_gaussians()
    model = SignedCircuit(c, dtype=torch.float64)
    g = np.linspace(-8, 8, 401)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    vals = np.array([_direct(c, r) for r in pts])
    z = (vals**2).sum() * (g[1] - g[0]) ** 2
    assert float(model.log_norm().detach().exp()) == pytest.approx(z, rel=1e-6)
    p = model.log_prob(torch.tensor(pts)).exp().detach().numpy()
    np.testing.assert_allclose(p, vals**2 / z, rtol=1e-6, atol=1e-15)
    q = square(c)
    assert q.meta["log_scale"] == pytest.approx(math.log(z), rel=1e-5)


def test_samples_follow_the_square(rng):
    c = next(_compatible(rng))
    model = SignedCircuit(c, dtype=torch.float64)
    rows = np.array(all_assignments(c))
    p = np.array([_direct(c, r) for r in rows]) ** 2
    p /= p.sum()
    n = 40_000
    s = sample(model, n, torch.Generator().manual_seed(0)).long().numpy()
    codes = np.ravel_multi_index(s.T, [v.domain.num_cats for v in c.variables])
    freq = np.bincount(codes, minlength=len(rows)) / n
    want = p[np.argsort(np.ravel_multi_index(rows.T, [v.domain.num_cats for v in c.variables]))]
    assert np.abs(freq - want).max() < 4 * math.sqrt(want.max() / n)


def test_real_samples_follow_the_square():
    """Samples of a 2-D subtractive Gaussian mixture: the marginal CDF of x at several points,
    and a quadrant's probability, against quadrature of the density."""
    model = SignedCircuit(_subtractive_gaussians(), dtype=torch.float64)
    n = 20_000
    s = sample(model, n, torch.Generator().manual_seed(1)).numpy()
    g = np.linspace(-8, 8, 801)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    dens = model.log_prob(torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1))).exp().detach().numpy()
    dens = dens.reshape(801, 801) * (g[1] - g[0]) ** 2
    for a in (-1.5, -0.5, 0.3, 1.0, 2.0):
        exact = dens[g <= a].sum()
        assert abs((s[:, 0] <= a).mean() - exact) < 4 * math.sqrt(exact * (1 - exact) / n) + 2e-3
    quadrant = dens[np.ix_(g <= 0.2, g <= -0.4)].sum()
    got = ((s[:, 0] <= 0.2) & (s[:, 1] <= -0.4)).mean()
    assert abs(got - quadrant) < 4 * math.sqrt(quadrant * (1 - quadrant) / n) + 2e-3


def test_the_square_as_a_circuit_is_its_own_density(rng):
    """square(c) read as is (squared=False: signed weights kept, divided by its integral) is
    the density c^2 / Z that SignedCircuit(c) computes."""
    for c in _compatible(rng):
        x = torch.tensor(all_assignments(c), dtype=torch.float64)
        as_is = SignedCircuit(square(c), squared=False, dtype=torch.float64)
        want = SignedCircuit(c, dtype=torch.float64).log_prob(x)
        got = as_is.log_prob(x).exp().detach().numpy()  # the square's weights are float32, and cancel
        np.testing.assert_allclose(got, want.exp().detach().numpy(), rtol=1e-3, atol=1e-7)
        s = sample(as_is, 2000, torch.Generator().manual_seed(0))
        assert float(as_is.log_prob(s).detach().exp().mean()) > 0  # every sample is a possible row


def test_adam_training_raises_likelihood_and_keeps_the_square_normalised(rng):
    tree = np.array([-1, 0, 0, 1, 3])
    target = _init(hclt_from_tree(tree, 3, latents=2), 11)
    data = torch.as_tensor(pc.compile(target).sample(2000, seed=0), dtype=torch.float32)
    for squared in (True, False):
        start = _init(hclt_from_tree(tree, 3, latents=3), 12)
        model = SignedCircuit(_signed(start, rng) if squared else start, squared=squared)
        before = mean_log_prob(model, data[1500:])
        history = fit(model, data[:1500], valid=data[1500:], epochs=8, lr=0.05)
        after = mean_log_prob(model, data[1500:])
        assert after > before + 0.05 and after == pytest.approx(max(e.valid_ll for e in history))
        rows = torch.tensor(all_assignments(start), dtype=torch.float32)
        assert float(model.log_prob(rows).exp().sum()) == pytest.approx(1.0, abs=1e-4)
        again = SignedCircuit(model.to_circuit(), squared=squared)  # the IR keeps what was learned
        assert mean_log_prob(again, data[1500:]) == pytest.approx(after, abs=1e-4)


def test_signed_circuits_are_refused_where_they_do_not_belong(rng):
    c = next(_compatible(rng))
    with pytest.raises(StructureError, match="signed.*monotone circuits.*SignedCircuit"):
        pc.compile(c)
    unsigned = Circuit(c.variables, c.nodes, c.root, c.params, {})
    with pytest.raises(ParameterError, match="negative.*declared signed"):
        verify(unsigned)
    with pytest.raises(ArgumentError, match="target must be auto, cpu, triton or torch, got 'gpu'"):
        SignedCircuit(c, target="gpu")
    with pytest.raises(StructureError, match="meta field 'signed'"):
        verify(Circuit(c.variables, c.nodes, c.root, c.params, {"signed": "yes"}))
    p = pc.builder.inputs(0, 2, pc.Poisson())
    counts = pc.compile(pc.to_circuit(pc.builder.summate(p, size=1)), passes="init").to_circuit()
    with pytest.raises(StructureError, match="poisson has none here"):
        SignedCircuit(counts)


def test_incompatible_squares_and_negative_products_are_refused(rng):
    refused = 0
    for _ in range(20):
        c = _signed(random_circuit(rng, 4), rng)
        try:
            multiply(c, c)
        except StructureError as err:
            refused += 1
            with pytest.raises(StructureError, match="not compatible|different variables"):
                SignedCircuit(c).log_norm()
            assert "compatible" in str(err) or "different" in str(err)
    assert refused > 0
    a = next(_compatible(rng))
    flipped = {k: dict(v) for k, v in a.params.items()}
    flipped[a.root] = {"weights": -np.asarray(a.params[a.root]["weights"])}
    b = Circuit(a.variables, a.nodes, a.root, flipped, a.meta, a.regions)
    with pytest.raises(StructureError, match="integrates to -"):
        multiply(a, b)  # the integral of a * (-a) is below 0


SIGNED_PC = """signed = true
var a, b : binary
ia[2] = bernoulli(a, p=[0.2, 0.9])
ib[2] = bernoulli(b, p=[0.6, 0.3])
pr[2] = product(ia, ib)
root = sum(pr, weights=[[1.5, -1.0]])
"""


def test_the_dsl_declares_signed_circuits():
    c = pc.parse(SIGNED_PC)
    assert c.meta["signed"] is True
    model = SignedCircuit(c, dtype=torch.float64)
    rows = all_assignments(c)
    want = [
        1.5 * pa * pb - 1.0 * qa * qb
        for pa, pb, qa, qb in [
            ((0.2 if a else 0.8), (0.6 if b else 0.4), (0.9 if a else 0.1), (0.3 if b else 0.7)) for a, b in rows
        ]
    ]
    np.testing.assert_allclose(_values(model, rows), want, rtol=1e-6)
    with pytest.raises(pc.ir.DSLSemanticError, match=r"<string>:6:\d+: weights must be non-negative .*signed = true"):
        pc.parse(SIGNED_PC.replace("signed = true\n", "\n"))
    with pytest.raises(pc.ir.DSLSemanticError, match=r"<string>:1:10: signed expects true or false"):
        pc.parse(SIGNED_PC.replace("signed = true", "signed = yes"))
    with pytest.raises(pc.ir.DSLSemanticError, match="signed must be set before the first node statement"):
        late = SIGNED_PC.replace("signed = true\n", "").replace("1.5, -1.0", "0.5, 0.5")
        pc.parse(late + "signed = true\n")
