"""The DSL's circuit algebra (`multiply`, `square`, `integrate` of whole circuits) against
enumeration by hand, the `seed` setting, and the errors at the call."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import located
from pccompile.ir import DSLSemanticError, StructureError

import pccompile as pc
from pccompile.signed import SignedCircuit

PA, PB = [[0.2, 0.7, 0.4], [0.9, 0.1, 0.6]], [[0.3, 0.5, 0.8], [0.6, 0.2, 0.1], [0.5, 0.5, 0.3]]
WA, WB = [0.4, 0.6], [0.2, 0.3, 0.5]


def _factor(name: str, p, w, sign: str = "") -> str:
    k = len(p)
    lines = [f"{name}{v}[{k}] = bernoulli(x[{v}], p=[{', '.join(str(r[v]) for r in p)}])" for v in range(3)]
    lines.append(f"{name}p[{k}] = product({name}0, {name}1, {name}2)")
    weights = ", ".join(f"{sign if i == 0 else ''}{wi}" for i, wi in enumerate(w))
    lines.append(f"{name} = sum({name}p, weights=[[{weights}]])")
    return "\n".join(lines) + "\n"


TEXT = "var x[3] : binary\n" + _factor("a", PA, WA) + _factor("b", PB, WB)


def _mixture(p, w, x, sign: float = 1.0) -> float:
    comps = [np.prod([r[v] if x[v] else 1 - r[v] for v in range(3)]) for r in p]
    return sum((sign if i == 0 else 1.0) * wi * ci for i, (wi, ci) in enumerate(zip(w, comps)))


ROWS = list(itertools.product([0, 1], repeat=3))


def test_multiply_then_integrate_is_the_normalised_product_marginal():
    circuit = pc.parse(TEXT + "ab = multiply(a, b)\nroot = integrate(ab, over=[x[1]])\n")
    assert [v.name for v in circuit.variables] == ["x[0]", "x[2]"]
    joint = {x: _mixture(PA, WA, x) * _mixture(PB, WB, x) for x in ROWS}
    z = sum(joint.values())
    model = pc.compile(circuit, dtype=torch.float64)
    for x0, x2 in itertools.product([0, 1], repeat=2):
        want = (joint[(x0, 0, x2)] + joint[(x0, 1, x2)]) / z
        assert float(model(torch.tensor([[x0, x2]])).detach().exp()) == pytest.approx(want, rel=1e-5)
    assert circuit.meta["log_scale"] == pytest.approx(math.log(z), rel=1e-6)


def test_square_of_a_signed_circuit_is_its_normalised_square():
    text = "signed = true\n" + TEXT.replace(_factor("a", PA, WA), _factor("a", PA, [1.5, 1.0], sign="-"))
    circuit = pc.parse(text + "root = square(a)\n")
    assert circuit.meta["signed"] is True
    vals = {x: _mixture(PA, [1.5, 1.0], x, sign=-1.0) ** 2 for x in ROWS}
    assert min(_mixture(PA, [1.5, 1.0], x, sign=-1.0) for x in ROWS) < 0  # the circuit subtracts
    z = sum(vals.values())
    model = SignedCircuit(circuit, squared=False, dtype=torch.float64)
    got = model.log_prob(torch.tensor(ROWS, dtype=torch.float64)).exp().detach().numpy()
    np.testing.assert_allclose(got, [vals[x] / z for x in ROWS], rtol=1e-5)
    with pytest.raises(StructureError, match="signed"):
        pc.compile(circuit)


def test_parameters_left_out_are_drawn_from_the_seed_setting():
    text = "var x[2] : binary\nu[2] = bernoulli(x[0])\nv[2] = bernoulli(x[1])\nc = sum(product(u, v))\n"
    text = text.replace("c = sum(product(u, v))", "uv[2] = product(u, v)\nc = sum(uv)")

    def log_scale(extra: str) -> float:
        return pc.parse(extra + text + "root = square(c)\n").meta["log_scale"]

    assert log_scale("") == log_scale("seed = 0\n")
    assert log_scale("seed = 3\n") != log_scale("")


@pytest.mark.parametrize(
    "line,match,token",
    [
        ("root = square(a0)", r"square takes whole circuits \(size 1\); 'a0' has size 2", "a0"),
        ("ab = multiply(a, b)\nq = sum(ab)", r"'ab' is a whole circuit \(multiply", "ab)"),
        ("root = integrate(a)", r"integrate needs over=\[variables\]", "integrate"),
        ("root[2] = square(a)", r"square makes a whole circuit, of size 1", "square"),
        ("root = multiply(a)", r"multiply takes 2 circuits, got 1", "multiply"),
        ("root = integrate(a, over=[x[1], x[1]])", r"a variable is named twice", "["),
        ("root = square(a, by=b)", r"square has no argument 'by'", "by"),
        ("root = integrate(a, over=[x[0], x[1], x[2]])", r"integrate: .*keep at least one", "integrate"),
        ("root = square(zz)", r"unknown node 'zz'", "zz"),
        ("root = square(0.5)", r"square takes node names \(whole circuits\)", "0.5"),
        ("seed = -1", r"seed expects a non-negative integer", "-1"),
    ],
)
def test_algebra_errors_name_the_place(line, match, token):
    text = TEXT + line + "\n"
    e = located(text, match, len(text.split("\n")) - 1, token)
    assert isinstance(e, DSLSemanticError)


def test_incompatible_factors_are_refused_at_the_call():
    text = TEXT + "c0[2] = bernoulli(x[0])\nc1[2] = bernoulli(x[1])\nc2[2] = bernoulli(x[2])\n"
    text += "c01[2] = product(c0, c1)\ns01[2] = sum(c01)\ncp[2] = product(s01, c2)\nc = sum(cp)\n"
    text += "d02[2] = product(a0, a2)\nds[2] = sum(d02)\ndp[2] = product(ds, a1)\nd = sum(dp)\n"
    with pytest.raises(DSLSemanticError, match="multiply: .*not compatible|multiply: .*different"):
        pc.parse(text + "root = multiply(c, d)\n")


SIGNED_SQUARE = "signed = true\n" + TEXT.replace(_factor("a", PA, WA), _factor("a", PA, [1.5, 1.0], sign="-"))
SIGNED_SQUARE += "root = square(a)\n"


def test_a_signed_square_prints_back_and_the_cli_checks_and_shows_it(tmp_path):
    from typer.testing import CliRunner

    from pccompile.cli import app

    circuit = pc.parse(SIGNED_SQUARE)
    again = pc.parse(pc.print_circuit(circuit))  # `signed = true` printed before the nodes
    x = torch.tensor(ROWS, dtype=torch.float64)
    p = SignedCircuit(circuit, squared=False, dtype=torch.float64).log_prob(x)
    np.testing.assert_allclose(
        SignedCircuit(again, squared=False, dtype=torch.float64).log_prob(x).detach(), p.detach(), rtol=1e-5
    )
    path = tmp_path / "square.pc"
    path.write_text(SIGNED_SQUARE)
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 0 and "signed: evaluate and train it with pccompile.signed" in r.output, r.output
    r = CliRunner().invoke(app, ["show", str(path), "--dsl"])
    assert r.exit_code == 0 and "signed = true" in r.output and "a__a[1] = sum(ap__ap" in r.output, r.output
