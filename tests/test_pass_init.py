"""`init` and `verify` as passes, filecheck style: init gives every parameterless input and untied
sum seeded random parameters and keeps the ones given; verify passes a valid circuit through."""

import numpy as np
import pytest
from filecheck import filecheck
from pccompile.ir import ParameterError
from pccompile.ir.text import format_circuit
from pccompile.passes import InitParams, Verify

import pccompile as pc

CASE = """
var a : binary
var b : categorical(3)
la[2] = bernoulli(a, p=[0.25, 0.5])
lb[2] = categorical(b)
p = product(la, lb)
s[2] = sum(p)
t[2] = sum(p, tie=s)
root = sum(s, t)
# CHECK: la[2] = input   bernoulli(a)  {params}
# CHECK-NEXT: lb[2] = input   categorical(b)  {params}
# CHECK-NEXT: p[2] = product la, lb$
# CHECK-NEXT: s[2] = sum     p  {params}$
# CHECK-NEXT: t[2] = sum     p  [tied to s]$
# CHECK-NEXT: root[1] = sum     s, t  {params}  <- root
"""


def test_init():
    circuit = pc.parse(CASE)
    out = InitParams(seed=5).run(circuit)
    filecheck(format_circuit(out), CASE)
    np.testing.assert_array_equal(out.params[0]["p"], [0.25, 0.5])  # given values are kept
    again, other = InitParams(seed=5).run(circuit), InitParams(seed=6).run(circuit)
    assert all(np.array_equal(again.params[k][n], out.params[k][n]) for k in out.params for n in out.params[k])
    assert not np.array_equal(other.params[1]["probs"], out.params[1]["probs"])
    Verify(require_params=True).run(out)


def test_verify_pass_requires_parameters_only_when_asked():
    circuit = pc.parse(CASE)
    assert Verify().run(circuit) is circuit
    with pytest.raises(ParameterError, match=r"node 'lb' .*parameters are missing"):
        Verify(require_params=True).run(circuit)
