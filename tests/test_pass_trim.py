"""`trim`, filecheck style: rows nothing reads are removed from inputs, products and sums; the
distribution is unchanged (checked by enumeration, also on random circuits with masks, ties and
indexed products)."""

import numpy as np
import pytest
import torch
from filecheck import filecheck
from helpers import all_assignments, random_circuit, reference_prob
from pccompile.ir import verify
from pccompile.ir.text import format_circuit
from pccompile.passes import InitParams, Trim
from pccompile.passes.trim import live_rows

import pccompile as pc

DEAD_COLUMNS = """
var a, b : binary
la[3] = bernoulli(a)
lb[3] = bernoulli(b)
p[3] = product(la, lb)
root = sum(p, mask=[[1, 0, 1]])
# row 1 of p is read by no edge: p, la and lb lose it, the root's mask goes with it
# CHECK: la[2] = input
# CHECK-NEXT: lb[2] = input
# CHECK-NEXT: p[2] = product la, lb$
# CHECK-NEXT: root[1] = sum     p  {params}
"""

THROUGH_INDEX = """
var a, b : binary
la[2] = bernoulli(a)
lb[3] = bernoulli(b)
ab[4] = product(la[[0, 0, 1, 1]], lb[[0, 1, 0, 2]])
root = sum(ab, mask=[[1, 1, 0, 0]])
# rows 0 and 1 of ab read la row 0 and lb rows 0, 1: la and lb shrink, ab reads the new rows
# CHECK: la[1] = input
# CHECK-NEXT: lb[2] = input
# CHECK-NEXT: ab[2] = product la[[0, 0]], lb$
"""


def _assert_same_distribution(before, after) -> None:
    model = pc.compile(after, dtype=torch.float64)
    rows = all_assignments(before)
    got = torch.exp(model(torch.tensor(rows))).detach().numpy()
    np.testing.assert_allclose(got, [reference_prob(before, r) for r in rows], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("case", [DEAD_COLUMNS, THROUGH_INDEX])
def test_trim(case):
    before = InitParams(seed=5).run(pc.parse(case))
    after = Trim().run(before)
    filecheck(format_circuit(after), case)
    _assert_same_distribution(before, after)


@pytest.mark.parametrize("block", [1, 2])
@pytest.mark.parametrize("trial", range(10))
def test_trim_keeps_random_circuits_valid_and_their_distribution(rng, trial, block):
    before = random_circuit(rng, num_vars=int(rng.integers(2, 5)), max_size=4)
    after = Trim(block=block).run(before)
    verify(after)
    _assert_same_distribution(before, after)
    assert all(m.all() for m in live_rows(after, block).values())  # nothing left to trim
    live = live_rows(before, block)
    rows = sum(n.size for n in before.nodes.values())
    dead = sum(int((~m).sum()) for m in live.values())
    unreached = sum(n.size for i, n in before.nodes.items() if i not in live)
    assert sum(n.size for n in after.nodes.values()) == rows - dead - unreached
    if block > 1:  # whole blocks go: a vector loses a multiple of `block` rows, or its ragged last block too
        for i, n in after.nodes.items():
            lost = before.nodes[i].size - n.size
            assert lost % block == 0 or before.nodes[i].size % block and lost % block == before.nodes[i].size % block


def test_a_block_under_one_is_refused():
    with pytest.raises(pc.ArgumentError, match="pass 'trim': option 'block' expects an integer in 1..65,536, got 0"):
        Trim(block=0)
