"""Our backward pass (flows) against autograd through an independent plain-torch evaluator."""

import numpy as np
import pytest
import torch
from helpers import UNDERFLOW_CIRCUIT, ZERO_EVIDENCE_CIRCUIT, random_circuit
from pccompile.ir import InputNode, ProductNode

import pccompile as pc


def naive_log_likelihood(model, x):
    """log p(x) from the module's own parameters, computed node vector by node vector with plain
    torch ops (autograd does the differentiation); shares no code with the executor."""
    circuit, prog = model.circuit, model.program
    logw = model.sum_log_weights()
    x_int, x_real = model.encode(x)
    inp = model.input_log_probs(x_int, x_real)  # [R_in, B]
    first = min(p.start for p in prog.input_partitions)
    vals = {}
    for nid, n in circuit.nodes.items():
        start, size = prog.node_rows[nid]
        if isinstance(n, InputNode):
            vals[nid] = inp[start - first : start - first + size]
        elif isinstance(n, ProductNode):
            vals[nid] = sum(vals[c][torch.as_tensor(n.child_rows(k))] for k, c in enumerate(n.children))
        else:
            src = circuit.param_source(n)
            lay = next(lo for lo in prog.sum_layout if lo.node == src.id)
            mask = torch.as_tensor(circuit.edge_mask(n))
            w = torch.full(mask.shape, float("-inf"), dtype=logw.dtype)
            w = w.masked_scatter(mask, logw[lay.offset : lay.offset + int(mask.sum())])
            ch = torch.cat([vals[c] for c in n.children], 0)  # [K, B]
            vals[nid] = torch.logsumexp(w.unsqueeze(2) + ch.unsqueeze(0), dim=1)
    return vals[circuit.root][0]


@pytest.mark.parametrize("trial", range(8))
def test_gradients_match_autograd_reference(rng, trial):
    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 6)), gaussian=trial % 2 == 0)
    model = pc.compile(circuit, dtype=torch.float64)
    B = 7
    x = torch.tensor(
        [
            [
                float(rng.integers(v.domain.num_cats)) if v.domain.num_cats else float(rng.normal())
                for v in circuit.variables
            ]
            for _ in range(B)
        ],
        dtype=torch.float64,
    )
    x[rng.random(x.shape) < 0.2] = float("nan")  # some missing values
    g = torch.tensor(rng.normal(size=B))  # arbitrary upstream gradient
    x1 = x.clone().requires_grad_(True)
    (model(x1) * g).sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    gx_ours = x1.grad
    model.zero_grad()
    x2 = x.clone().requires_grad_(True)
    (naive_log_likelihood(model, x2) * g).sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    if trial % 2 == 0:  # a Gaussian variable: gradients reach the data
        torch.testing.assert_close(torch.nan_to_num(gx_ours), torch.nan_to_num(x2.grad), rtol=1e-8, atol=1e-10)
    else:
        assert gx_ours is None and x2.grad is None
    torch.testing.assert_close(model(x), naive_log_likelihood(model, x).detach(), rtol=1e-10, atol=1e-10)


def test_zero_probability_evidence_gives_minus_inf_and_no_nan():
    model = pc.compile(
        ZERO_EVIDENCE_CIRCUIT,
        dtype=torch.float64,
    )
    out = model(torch.tensor([[1, 0], [0, 1], [-1, 1]]))
    assert out[0] == float("-inf")
    assert torch.isfinite(out[1:]).all()
    out[1:].sum().backward()
    for p in model.parameters():
        assert not torch.isnan(p.grad).any()
    model.zero_grad()
    out = model(torch.tensor([[1, 0], [0, 1]]))
    out.sum().backward()  # the -inf row contributes no NaN to the gradients
    for p in model.parameters():
        assert not torch.isnan(p.grad).any()


def test_underflowing_sums_are_recomputed_exactly():
    # Node 0 puts all its weight on a child 5000 nats below its sibling (the group max): the
    # factored matmul underflows to -inf; the exact fallback must return the true, finite value,
    # and the root reads only that node.
    src = UNDERFLOW_CIRCUIT
    model = pc.compile(src)
    out = model(torch.tensor([[100.0]]))
    np.testing.assert_allclose(out.detach().numpy(), -0.5 * 100.0**2 - 0.5 * np.log(2 * np.pi), rtol=1e-6)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert float(model.inputs[0].mean.grad[0]) == pytest.approx(100.0, rel=1e-4)  # d/dmean of -(x-mean)^2/2


def test_deep_chain_stays_finite():
    # 300 variables in a chain: log-likelihoods near -200 and below must not underflow or NaN.
    V = 300
    lines = [f"var x[{V}] : binary"]
    lines.append("l0[4] = bernoulli(x[0])")
    prev = "l0"
    for v in range(1, V):
        lines.append(f"l{v}[4] = bernoulli(x[{v}])")
        lines.append(f"p{v} = product({prev}, l{v})")
        lines.append(f"s{v}[4] = sum(p{v})")
        prev = f"s{v}"
    lines.append(f"root = sum({prev})")
    model = pc.compile("\n".join(lines))
    x = torch.randint(0, 2, (8, V))
    out = model(x)
    assert torch.isfinite(out).all() and (out < -100).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
