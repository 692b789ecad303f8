"""`vectorize`, filecheck style: scalar DSL in, printed IR out (the CHECK lines beside the input)."""

import numpy as np
import pytest
from filecheck import filecheck
from pccompile.ir import DecomposabilityError
from pccompile.ir.text import format_circuit
from pccompile.passes import Vectorize

import pccompile as pc

MERGE = """
var a, b : binary
l0 = bernoulli(a, p=[0.2])
l1 = bernoulli(a, p=[0.7])
m0 = bernoulli(b, p=[0.4])
m1 = bernoulli(b, p=[0.9])
p0 = product(l0, m0)
p1 = product(l1, m1)
p2 = product(l0, m1)
root = sum(p0, p1, p2, weights=[[0.3, 0.5, 0.2]])
# The four inputs become one vector per variable, the three products one vector with one row
# index per child (p2 takes row 0 of a and row 1 of b), the root one sum over that vector.
# CHECK: node_vectors=4, nodes=8
# CHECK-NEXT: input0[2] = input   bernoulli(a)
# CHECK-NEXT: input1[2] = input   bernoulli(b)
# CHECK-NEXT: [3] = product input0[[0, 1, 0]], input1[[0, 1, 1]]
# CHECK-NEXT: root[1] = sum     product2  {params}  <- root$
"""

MASKED = """
var a : binary
l0 = bernoulli(a, p=[0.2])
l1 = bernoulli(a, p=[0.7])
s0 = sum(l0, l1, weights=[[0.5, 0.5]])
s1 = sum(l1, weights=[[1]])
root = sum(s0, s1, weights=[[0.4, 0.6]])
# s0 and s1 read the same input vector, s1 only its row 1: one sum vector with a mask.
# CHECK: input0[2] = input   bernoulli(a)
# CHECK-NEXT: sum1[2] = sum     input0  [mask 3/4 edges]
# CHECK-NEXT: root[1] = sum     sum1  {params}  <- root$
"""


@pytest.mark.parametrize("case", [MERGE, MASKED])
def test_vectorize(case):
    filecheck(format_circuit(Vectorize().run(pc.parse(case))), case)


def test_vectorize_moves_every_parameter_to_its_row():
    out = Vectorize().run(pc.parse(MERGE))
    p = {out.nodes[k].name: v for k, v in out.params.items()}
    np.testing.assert_allclose(p["input0"]["p"], [0.2, 0.7])
    np.testing.assert_allclose(p["input1"]["p"], [0.4, 0.9])
    np.testing.assert_allclose(p["root"]["weights"], [[0.3, 0.5, 0.2]])


def test_vectorize_leaves_vector_circuits_alone():
    circuit = pc.parse("var a : binary\nl[2] = bernoulli(a)\nroot = sum(l)\n")
    assert Vectorize().run(circuit) is circuit


def test_vectorize_refuses_a_product_it_would_have_to_drop_a_child_of():
    from test_errors_inputs import _two_inputs_over_one_variable, _unverified_scalar

    with pytest.raises(DecomposabilityError, match="two of its children are over the same variables"):
        Vectorize().run(_unverified_scalar(_two_inputs_over_one_variable()))
