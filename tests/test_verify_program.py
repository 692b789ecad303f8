"""verify_program: each invariant of a lowered Program, broken on purpose in a real Program."""

import dataclasses

import numpy as np
import pytest
from pccompile.ir import ZERO_ROW
from pccompile.ir.verify_program import ProgramError, verify_program
from pccompile.passes import lower

import pccompile as pc


@pytest.fixture
def program():
    circuit = pc.compile("examples/sparse.pc").circuit
    prog = lower(circuit, debug=True)
    verify_program(prog)
    return prog


def _first(program, kind):
    li = next(i for i, lay in enumerate(program.layers) if lay.kind == kind)
    return li, program.layers[li].partitions[0]


def _replace(program, li, part):
    layers = list(program.layers)
    layers[li] = dataclasses.replace(layers[li], partitions=(part,) + layers[li].partitions[1:])
    return dataclasses.replace(program, layers=tuple(layers))


def test_a_row_written_twice(program):
    li, part = _first(program, "product")
    rows = np.array(part.rows, copy=True)
    rows[-1] = rows[0]
    with pytest.raises(ProgramError, match=r"writes row \d+, which is written more than once"):
        verify_program(_replace(program, li, dataclasses.replace(part, rows=rows)))


def test_a_child_read_before_it_is_written(program):
    li, part = _first(program, "product")
    kids = np.array(part.child_rows, copy=True)
    kids[0, 0] = program.root_row
    with pytest.raises(ProgramError, match=rf"reads row {program.root_row} before any layer writes it"):
        verify_program(_replace(program, li, dataclasses.replace(part, child_rows=kids)))


def test_padding_with_a_weight_and_unreferenced_weights(program):
    li, part = _first(program, "sum")
    ids = np.array(part.param_id_table(program.num_sum_params), copy=True)
    kids = np.array(part.child_rows, copy=True)
    kids[0, 0] = ZERO_ROW
    ids[0, :, 0] = 0
    bad = dataclasses.replace(part, child_rows=kids, param_ids=ids, param_start=None, fanin=None)
    with pytest.raises(ProgramError, match="gives a padded child slot a real weight"):
        verify_program(_replace(program, li, bad))
    ids = np.array(part.param_id_table(program.num_sum_params), copy=True)
    first = int(ids[ids < program.num_sum_params].min())
    ids[ids == first] = first + 1  # weight `first` is referenced nowhere else in this small circuit
    bad = dataclasses.replace(part, param_ids=ids, param_start=None, fanin=None)
    with pytest.raises(ProgramError, match=rf"sum weight {first} is never referenced"):
        verify_program(_replace(program, li, bad))


def test_a_row_never_written(program):
    bigger = dataclasses.replace(program, num_rows=program.num_rows + 1)
    with pytest.raises(ProgramError, match=rf"row {program.num_rows} is never written"):
        verify_program(bigger)
