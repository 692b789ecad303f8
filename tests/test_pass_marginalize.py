"""`integrate` and `condition`: the circuit each gives equals the runtime's marginal and
conditional queries on random circuits of every structure (masks, ties, indexed products,
Gaussians), sums to 1 by enumeration, and keeps log p(evidence) exactly; filecheck on what is
left; the errors name the variable or the node and the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from filecheck import filecheck
from helpers import ZERO_EVIDENCE_CIRCUIT, all_assignments, random_circuit, reference_prob
from pccompile.ir import ArgumentError, verify
from pccompile.ir.text import format_circuit
from pccompile.passes import Condition, Integrate, run

import pccompile as pc
from pccompile.structures import hclt_from_tree, hmm

MIX = """
var a, b, c : binary
la[2] = bernoulli(a, p=[0.2, 0.9])
lb[2] = bernoulli(b, p=[0.5, 0.3])
lc[2] = bernoulli(c, p=[0.6, 0.1])
ab[2] = product(la, lb)
s[2] = sum(ab, weights=[[0.5, 0.5], [0.25, 0.75]])
top[2] = product(s, lc)
root = sum(top, weights=[[0.3, 0.7]])
# a and b go: their inputs and the products over them fold into constants, and s with them
# CHECK: Circuit(vars=1,
# CHECK: lc[2] = input   bernoulli(c)
# CHECK-NEXT: top[2] = product lc
# CHECK-NEXT: root[1] = sum     top
"""


def _random(rng, **kw):
    return random_circuit(rng, num_vars=4, gaussian=bool(rng.random() < 0.5), **kw)


def _rows(circuit, rng, n=12):
    cols = []
    for v in circuit.variables:
        k = v.domain.num_cats
        cols.append(rng.normal(size=n) if k is None else rng.integers(0, k, n).astype(float))
    return np.stack(cols, 1)


def _structures(rng):
    yield from (_random(rng) for _ in range(6))
    yield pc.to_circuit(hclt_from_tree(np.array([-1, 0, 0, 1, 1]), 3, latents=3))
    yield pc.to_circuit(hmm(5, 3, 3))


def _params(circuit):
    return pc.compile(circuit, passes="init", dtype=torch.float64).to_circuit()


def test_integrate_equals_the_runtimes_marginal_on_every_structure(rng):
    for circuit in _structures(rng):
        circuit = _params(circuit)
        gone = sorted(rng.choice(circuit.num_vars, size=int(rng.integers(1, circuit.num_vars)), replace=False))
        names = [circuit.variables[k].name for k in gone]
        small = run(circuit, Integrate(tuple(names)))
        verify(small, require_params=True)
        assert [v.name for v in small.variables] == [v.name for k, v in enumerate(circuit.variables) if k not in gone]
        assert abs(small.meta["log_scale"]) < 1e-12  # log 1, to rounding
        x = _rows(circuit, rng)
        masked = x.copy()
        masked[:, gone] = np.nan
        want = pc.compile(circuit, dtype=torch.float64)(torch.as_tensor(masked)).detach()
        keep = [k for k in range(circuit.num_vars) if k not in gone]
        got = pc.compile(small, dtype=torch.float64)(torch.as_tensor(x[:, keep])).detach()
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_condition_gives_the_conditional_and_the_evidence_on_every_structure(rng):
    for circuit in _structures(rng):
        circuit = _params(circuit)
        x = _rows(circuit, rng)
        gone = sorted(rng.choice(circuit.num_vars, size=int(rng.integers(1, circuit.num_vars)), replace=False))
        evidence = tuple(f"{circuit.variables[k].name}={float(x[0, k])!r}" for k in gone)
        small = pc.run_passes(circuit, Condition(evidence))
        model = pc.compile(circuit, dtype=torch.float64)
        e_row = np.full((1, circuit.num_vars), np.nan)
        e_row[0, gone] = x[0, gone]
        log_e = float(model(torch.as_tensor(e_row)).detach()[0])
        assert small.meta["log_scale"] == pytest.approx(log_e, abs=1e-9)
        x[:, gone] = x[0, gone]  # every row agrees with the evidence
        joint = model(torch.as_tensor(x)).detach()
        keep = [k for k in range(circuit.num_vars) if k not in gone]
        got = pc.compile(small, dtype=torch.float64)(torch.as_tensor(x[:, keep])).detach()
        torch.testing.assert_close(got, joint - log_e, rtol=1e-6, atol=1e-6)  # p(rest | e); weights stored as float32


def test_the_results_sum_to_one_by_enumeration(rng):
    """Brute force on discrete circuits: the integrated circuit is the sum over the integrated
    variables' values; the conditioned one is a normalised distribution."""
    for _ in range(5):
        circuit = _params(random_circuit(rng, num_vars=4))
        small = run(circuit, Integrate(("x0", "x2")))
        for a in all_assignments(small):
            full = sum(
                reference_prob(circuit, [u, a[0], v, a[1]])
                for u in range(circuit.variables[0].domain.num_cats)
                for v in range(circuit.variables[2].domain.num_cats)
            )
            assert reference_prob(small, a) == pytest.approx(full, rel=1e-6)
        cond = pc.run_passes(circuit, "condition{x1=1,x3=0}")
        assert sum(reference_prob(cond, a) for a in all_assignments(cond)) == pytest.approx(1.0, abs=1e-6)


def test_what_is_left_filecheck():
    filecheck(format_circuit(run(pc.to_circuit(MIX), "integrate{vars=a,b}")), MIX)


def test_impossible_evidence_gives_minus_infinity():
    circuit = pc.compile(ZERO_EVIDENCE_CIRCUIT).to_circuit()
    small = pc.run_passes(circuit, "condition{a=1}")
    assert small.meta["log_scale"] == -math.inf
    verify(small, require_params=True)


def test_the_pipeline_spells_them_and_errors_name_the_variable():
    assert run(pc.to_circuit(MIX), "integrate{vars=a,b}").num_vars == 1  # a list option across commas
    assert Condition(("a=1", "b=0")).values() == {"a": 1.0, "b": 0.0}
    with pytest.raises(
        ArgumentError, match="pass 'integrate': the circuit has no variable 'z'; its variables: a, b, c"
    ):
        run(pc.to_circuit(MIX), "integrate{vars=a,z}")
    with pytest.raises(ArgumentError, match="every variable would go, leaving a constant"):
        run(pc.to_circuit(MIX), "integrate{vars=a,b,c}")
    with pytest.raises(ArgumentError, match="pass 'condition': evidence for 'a' expects a finite number"):
        pc.run_passes(pc.to_circuit(MIX), "condition{a=yes}")
    with pytest.raises(
        ArgumentError, match="pass 'condition' needs the 'evidence_log_probs' analysis, which the driver"
    ):
        run(pc.to_circuit(MIX), "condition{a=1}")  # the passes alone compute no input densities


def test_compile_runs_them_and_keeps_the_evidence():
    model = pc.compile(MIX, passes="condition{c=1}")
    assert model.num_vars == 2
    assert model.circuit.meta["log_scale"] == pytest.approx(math.log(0.3 * 0.6 + 0.7 * 0.1))  # s sums to 1


def test_pcc_show_runs_them_from_the_command_line():
    from typer.testing import CliRunner

    from pccompile.cli import app

    r = CliRunner().invoke(app, ["show", "examples/mixture.pc", "-p", "integrate{vars=a,b}"])
    assert r.exit_code == 0, r.output
    assert "Circuit(vars=1," in r.output and "gaussian(h)" in r.output and "bernoulli(a)" not in r.output
    r = CliRunner().invoke(app, ["show", "examples/mixture.pc", "-p", "condition{a=1,b=2}"])
    assert r.exit_code == 0 and "Circuit(vars=1," in r.output, r.output
