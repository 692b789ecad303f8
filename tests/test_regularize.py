"""Data softening and entropy regularisation (learn.regularize): one EM step against the update
computed by hand from the formulas of Liu & Van den Broeck (2021), with the expected counts
from the independent reference evaluator (tests/helpers.py); both off leaves EM unchanged."""

import numpy as np
import pytest
import torch
from helpers import all_assignments, reference_flows, reference_prob
from pccompile.ir import ArgumentError, Domain, InputNode, SumNode, Variable
from pccompile.ir.families.maxent import entropic_probs, row_sum_last
from pccompile.passes import InitParams

import pccompile as pc
from pccompile.learn import TrainConfig
from pccompile.learn.em import em_step
from pccompile.learn.regularize import Regularization, value_frequencies
from pccompile.structures import hclt_from_tree

CATS = [3, 2, 3]
PC = 0.1


def _model(seed=0):
    root = hclt_from_tree(np.array([-1, 0, 0]), CATS, latents=2)
    circuit = InitParams(seed=seed).run(pc.build(root, [Variable(f"x{i}", Domain(k)) for i, k in enumerate(CATS)]))
    return pc.compile(circuit, dtype=torch.float64)


def _data(rng, n=7):
    return np.stack([rng.integers(0, k, n) for k in CATS], 1)


def _input_probs(node, params):
    if node.dist.name == "bernoulli":
        p = np.asarray(params["p"], np.float64)
        return np.stack([1 - p, p], 1)
    return np.asarray(params["probs"], np.float64)


def _expected_counts(circuit, rows, weights):
    """Expected counts of every sum edge and input value: sum over data rows of the posterior
    over assignments x' (weights[row][x'] ∝ p(x') W(row, x')) times the flows at x'."""
    assignments = all_assignments(circuit)
    edges: dict[int, np.ndarray] = {}
    inputs: dict[int, np.ndarray] = {}
    for w in weights:
        post = w / w.sum()
        for q, x in zip(post, assignments):
            e, nodes = reference_flows(circuit, x, node_flows=True)
            for nid, f in e.items():
                edges[nid] = edges.get(nid, 0) + q * f
            for nid, node in circuit.nodes.items():
                if isinstance(node, InputNode):
                    k = CATS[node.var]
                    c = inputs.setdefault(nid, np.zeros((node.size, k)))
                    c[:, x[node.var]] += q * nodes[nid]
    return edges, inputs


def _check_params(model, want_sums, want_inputs):
    got = model.to_circuit()
    for nid, w in want_sums.items():
        np.testing.assert_allclose(got.params[nid]["weights"], w, rtol=1e-5, atol=1e-7)
    for nid, p in want_inputs.items():
        np.testing.assert_allclose(_input_probs(got.node(nid), got.params[nid]), p, rtol=1e-5, atol=1e-7)


def _plain_m_step(edges, inputs):
    sums = {nid: (f + PC / f.shape[1]) / (f.sum(1, keepdims=True) + PC) for nid, f in edges.items()}
    ins = {nid: (c + PC / c.shape[1]) / (c.sum(1, keepdims=True) + PC) for nid, c in inputs.items()}
    return sums, ins


@pytest.mark.parametrize("beta", [0.05, 0.3])
def test_one_softened_em_step_matches_the_hand_update(rng, beta):
    model = _model(seed=int(rng.integers(100)))
    circuit = model.to_circuit()
    x = _data(rng)
    marg = [np.bincount(x[:, v], minlength=k) / len(x) for v, k in enumerate(CATS)]
    assignments = all_assignments(circuit)
    p = np.array([reference_prob(circuit, a) for a in assignments])
    # soft evidence: w(v | x) = (1 - beta) [v = x] + beta m_v per variable, p(x') prod_i w(x'_i | x_i)
    weights = [
        p
        * np.array(
            [np.prod([(1 - beta) * (a[i] == r[i]) + beta * marg[i][a[i]] for i in range(3)]) for a in assignments]
        )
        for r in x
    ]
    want = _plain_m_step(*_expected_counts(circuit, x, weights))
    reg = Regularization(soften=beta, marginals=value_frequencies(x, CATS))
    ll = em_step(model, *model.encode(x), 1.0, PC, reg=reg)
    np.testing.assert_allclose(float(ll), np.log([w.sum() for w in weights]).sum(), rtol=1e-9)
    _check_params(model, *want)


def _entropic_by_bisection(a, b):
    """argmax sum a log t + b H(t) on the simplex, from a / t - b log t = lam by nested bisection."""
    if b == 0:
        return a / a.sum()

    def theta(lam):
        lo, hi = np.full_like(a, -800.0), np.zeros_like(a)  # log t in [lo, hi]; f decreases in log t
        for _ in range(200):
            mid = (lo + hi) / 2
            big = a * np.exp(-mid) - b * mid > lam
            lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
        return np.exp((lo + hi) / 2)

    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if theta(mid).sum() > 1 else (lo, mid)
    t = theta((lo + hi) / 2)
    return t / t.sum()


def test_one_entropy_regularised_em_step_matches_the_hand_update(rng):
    tau = 0.05
    model = _model(seed=int(rng.integers(100)))
    circuit = model.to_circuit()
    x = _data(rng)
    assignments = all_assignments(circuit)
    p = np.array([reference_prob(circuit, a) for a in assignments])
    weights = [p * np.array([float(list(a) == list(r)) for a in assignments]) for r in x]
    edges, inputs = _expected_counts(circuit, x, weights)
    _, reach = reference_flows(circuit, [-1, -1, -1], node_flows=True)  # top-down reach probabilities
    scale = tau * (len(x) + PC)
    want_sums, want_inputs = {}, {}
    for nid, f in edges.items():
        a = f + PC / f.shape[1]
        want_sums[nid] = np.stack([_entropic_by_bisection(a[r], scale * reach[nid][r]) for r in range(len(a))])
    for nid, c in inputs.items():
        a = c + PC / c.shape[1]
        want_inputs[nid] = np.stack([_entropic_by_bisection(a[r], scale * reach[nid][r]) for r in range(len(a))])
    root = circuit.node(circuit.root)
    assert isinstance(root, SumNode) and np.isclose(reach[circuit.root][0], 1.0)
    em_step(model, *model.encode(x), 1.0, PC, reg=Regularization(entropy=tau))
    _check_params(model, want_sums, want_inputs)


def test_both_off_leave_em_unchanged(rng):
    x = _data(rng, 20)
    plain, off = _model(3), _model(3)
    for _ in range(3):
        em_step(plain, *plain.encode(x), 0.7, PC)
        em_step(off, *off.encode(x), 0.7, PC, reg=Regularization(soften=0.0, entropy=0.0))
    for a, b in zip(plain.state_dict().values(), off.state_dict().values()):
        assert torch.equal(a, b)
    assert Regularization.from_data(0.0, 0.0, x, CATS) is None


def test_the_solver_meets_the_optimality_condition(rng):
    """a_i / theta_i - b log theta_i is one constant per row at the optimum."""
    a = torch.as_tensor(rng.random((50, 9)) ** 6 * 100 + 1e-4)
    b = torch.as_tensor(rng.choice([1e-4, 1e-2, 1.0], size=(50, 1)) * a.sum(1, keepdim=True).numpy())
    theta = entropic_probs(a, b.expand_as(a), row_sum_last)
    g = a / theta - b * theta.log()
    assert torch.allclose(theta.sum(1), torch.ones(50, dtype=theta.dtype))
    assert float(((g.amax(1) - g.amin(1)) / g.abs().amax(1)).max()) < 1e-9


def test_settings_are_checked():
    with pytest.raises(ArgumentError, match=r"--soften expects a finite number in \[0, 1\), got 1.5"):
        TrainConfig(soften=1.5)
    with pytest.raises(ArgumentError, match=r"--soften expects a finite number in \[0, 1\), got 1.0"):
        TrainConfig(soften=1.0)
    with pytest.raises(ArgumentError, match=r"--entropy-reg expects a finite number in \[0, 1\), got -0.1"):
        TrainConfig(entropy=-0.1)
    with pytest.raises(ArgumentError, match=r"--entropy-reg expects a finite number in \[0, 1\), got nan"):
        Regularization(entropy=float("nan"))
    with pytest.raises(ArgumentError, match="EM regularisers"):
        TrainConfig(optimizer="adam", soften=0.01)


def test_pcc_train_with_softening_entropy_and_a_mixture_of_hclts(tmp_path):
    """The options end to end: a mixture of two HCLTs over the digits, softened, entropy
    regularised, mini-batch then full-batch EM; the run reports both settings and every epoch's
    validation LL is finite."""
    from typer.testing import CliRunner

    from pccompile.cli import app
    from pccompile.io import read

    spec = tmp_path / "s.pc"
    spec.write_text(
        'var px[64] : categorical(17)\nroot = hclt(px, latents=3, trees=2, data="builtin:digits", max_rows=300)\n'
    )
    out = tmp_path / "m.pcz"
    args = ["train", str(spec), "--data", "builtin:digits", "--valid", "builtin:digits:valid", "--epochs", "2"]
    args += [
        "--finish",
        "1",
        "-b",
        "256",
        "--soften",
        "0.01",
        "--entropy-reg",
        "0.01",
        "-o",
        str(out),
        "--samples",
        "0",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "softening 0.01" in r.output and "entropy reg 0.01" in r.output
    hist = read(tmp_path / "m.ckpt.pcz")[0]["extra"]["train_state"]["history"]
    assert len(hist) == 3 and all(np.isfinite(h["valid_ll"]) for h in hist)
    r = CliRunner().invoke(app, [*args[:-4], "--optimizer", "adam", "-o", str(tmp_path / "a.pcz")])
    assert r.exit_code != 0 and "EM regularisers" in r.output


def test_softening_without_the_value_frequencies_is_refused():
    with pytest.raises(ArgumentError, match="softening needs the training data's value frequencies"):
        Regularization(soften=0.1)
