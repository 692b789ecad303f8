"""`normalize`, filecheck style: dead nodes dropped, single-child products bypassed, product
chains flattened; the distribution is unchanged (checked by enumeration)."""

import pytest
import torch
from filecheck import filecheck
from helpers import all_assignments, reference_prob
from pccompile.ir.text import format_circuit
from pccompile.passes import Collapse, InitParams, Normalize

import pccompile as pc

CHAINS = """
var a, b : binary
la[2] = bernoulli(a)
lb[2] = bernoulli(b)
one = product(la)
pp = product(one, lb)
q = product(pp)
root = sum(q)
# one (a single child) and q (a product of a product) disappear: q reads la and lb directly.
# CHECK: la[2] = input
# CHECK-NEXT: lb[2] = input
# CHECK-NOT: one
# CHECK-NOT: pp
# CHECK-NEXT: q[2] = product la, lb$
# CHECK-NEXT: root[1] = sum     q
"""

INDEXED = """
var a, b : binary
la[2] = bernoulli(a)
lb[2] = bernoulli(b)
ab[4] = product(la[[0, 0, 1, 1]], lb[[0, 1, 0, 1]])
q = product(ab)
root = sum(q)
# A row-indexed product is not an elementwise chain: it stays; the single-child q above it goes.
# CHECK: ab[4] = product la[[0, 0, 1, 1]], lb[[0, 1, 0, 1]]
# CHECK-NOT: q[4]
# CHECK: root[1] = sum     ab
"""


def _assert_same_distribution(before, after, rel: float) -> None:
    """The compiled `after` gives every assignment the probability the reference gives `before`."""
    model = pc.compile(after, dtype=torch.float64)
    for row in all_assignments(before):
        got = float(torch.exp(model(torch.tensor([row]))).item())
        assert got == pytest.approx(reference_prob(before, row), rel=rel)


@pytest.mark.parametrize("case", [CHAINS, INDEXED])
def test_normalize(case):
    before = InitParams(seed=3).run(pc.parse(case))  # parameters first, so both sides share them
    after = Normalize().run(before)
    filecheck(format_circuit(after), case)
    _assert_same_distribution(before, after, rel=1e-9)


CHAIN_OF_SUMS = """
var a, b : binary
la[2] = bernoulli(a)
lb[2] = bernoulli(b)
p = product(la, lb)
inner[3] = sum(p)
la2[2] = bernoulli(a)
lb2[2] = bernoulli(b)
la2b[2] = product(la2, lb2)
mid[2] = sum(inner, la2b)
one = sum(p)
root = sum(mid, one)
# inner (read by mid only) folds into mid, mid (read by root only) into root; `one` too:
# the root reads the products directly, with the weights multiplied through.
# CHECK: p[2] = product la, lb
# CHECK-NOT: inner[3]
# CHECK-NOT: mid[2]
# CHECK: root[1] = sum     la2b, p  {params}  <- root$
"""

SINGLE_ROW = """
var a, b : binary
la = bernoulli(a)
lb[3] = bernoulli(b)
copy[3] = sum(la)
p = product(copy[[0]], lb[[1]])
root = sum(p)
# copy is a sum over one row: it becomes a product copying la, and p reads through it
# CHECK: copy[3] = product la[[0, 0, 0]]$
"""


@pytest.mark.parametrize("case", [CHAIN_OF_SUMS, SINGLE_ROW])
def test_normalize_collapses_sum_chains_and_single_row_sums(case):
    before = InitParams(seed=4).run(pc.parse(case))
    after = Collapse().run(before)
    filecheck(format_circuit(after), case)
    _assert_same_distribution(before, after, rel=1e-6)
    assert format_circuit(Normalize().run(before)).count("sum") == format_circuit(before).count("sum")
