"""`verify_program`: the invariants every lowered Program keeps, checked on its index arrays.

A broken Program is a compiler bug, not a user error, so the failure is a ProgramError (not a
PCError). `lower()` runs this when PCC_DEBUG=1 (the test suite sets it) or when asked to."""

from __future__ import annotations

import numpy as np

from .program import ONE_ROW, ZERO_ROW, Program


class ProgramError(AssertionError):
    """A Program breaks an invariant of the lowering (a bug in pccompile)."""


def verify_program(program: Program) -> None:
    """Every row written exactly once, children before parents, padding with no weight, every
    weight referenced; raise ProgramError naming the layer and row otherwise."""
    n = program.num_rows
    written = np.zeros(n, dtype=bool)
    written[[ZERO_ROW, ONE_ROW]] = True
    used = np.zeros(program.num_sum_params + 1, dtype=bool)
    for li, layer in enumerate(program.layers):
        for part in layer.partitions:
            if layer.kind == "input":
                rows = np.arange(part.start, part.start + part.size)
            else:
                rows = np.asarray(part.rows).reshape(-1)
                _check_children(li, np.asarray(part.child_rows), written, n)
            _write(li, rows, written)
            if layer.kind == "sum":
                _check_weights(li, part, program.num_sum_params, used)
    if not written.all():
        raise ProgramError(f"row {int(np.flatnonzero(~written)[0])} is never written")
    if not 0 <= program.root_row < n:
        raise ProgramError(f"the root row {program.root_row} is outside the buffer of {n} rows")
    if not used[:-1].all():
        raise ProgramError(f"sum weight {int(np.flatnonzero(~used[:-1])[0])} is never referenced")


def _check_children(li: int, kids: np.ndarray, written: np.ndarray, n: int) -> None:
    flat = kids.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        raise ProgramError(f"layer {li} reads a row outside the buffer of {n} rows")
    early = ~written[flat]
    if early.any():
        raise ProgramError(f"layer {li} reads row {int(flat[early][0])} before any layer writes it")


def _write(li: int, rows: np.ndarray, written: np.ndarray) -> None:
    twice = written[rows]
    if twice.any() or np.unique(rows).size != rows.size:
        row = int(rows[twice][0]) if twice.any() else int(np.argmax(np.bincount(rows)))
        raise ProgramError(f"layer {li} writes row {row}, which is written more than once")
    written[rows] = True


def _check_weights(li: int, part, num_params: int, used: np.ndarray) -> None:
    pid = part.param_id_table(num_params)
    if pid.size and (pid.min() < 0 or pid.max() > num_params):
        raise ProgramError(f"layer {li} refers to a weight outside 0..{num_params}")
    pad = np.broadcast_to((np.asarray(part.child_rows) == ZERO_ROW)[:, None, :], pid.shape)
    if np.any(pid[pad] != num_params):
        raise ProgramError(f"layer {li} gives a padded child slot a real weight")
    used[pid.reshape(-1)] = True
