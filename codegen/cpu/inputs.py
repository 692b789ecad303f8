"""Input families' kernels on the CPU target: the EM counts of every family whose statistics
are counts per value (`ir.families.counts.CountsFamily`: four rows at a time, at the batch's
codes), and the M-step of a categorical partition as one pass over its logits (`CPU_M_STEPS`,
keyed by family class; the family's torch update makes about ten passes over [rows, K]
tensors). Other families take their own code (ir.families); the table lookup of the forward
pass serves every family with a `log_table` and needs no entry."""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import numpy as np
import torch
from pccompile.ir.families import Categorical, family
from pccompile.ir.families.counts import CountsFamily

_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CODES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # part -> (x_int, its version, codes)
_NORMALISED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # part -> (its logits, their version, normalised?)


def variable_runs(part) -> tuple[torch.Tensor, torch.Tensor]:
    """([m] each row's run, [runs] each run's variable) of an input partition: its rows in
    consecutive runs of one variable, of any lengths (an HCLT's node vectors, also after `trim`
    left them of different sizes). The kernels read one row of codes per run, not per row."""
    if part not in _RUNS:
        v = np.asarray(part.vars)
        first = np.concatenate([[True], v[1:] != v[:-1]])[: v.size]  # a run starts here
        run = np.cumsum(first) - 1
        _RUNS[part] = (torch.as_tensor(run.astype(np.int64)), torch.as_tensor(v[first].astype(np.int64)))
    return _RUNS[part]


def run_codes(lib, part, x_int: torch.Tensor) -> torch.Tensor:
    """[runs, B] the value of each run's variable, a missing one coded as K = part.num_cats: the
    codes kernel on a contiguous int64 batch, else torch. Kept per partition while x_int is the
    same unchanged tensor (its version counter), so that a step's forward pass and its counts
    share them."""
    kept = _CODES.get(part)
    inference = x_int.is_inference()
    if kept is not None and not inference and kept[0] is x_int and kept[1] == x_int._version:
        return kept[2]
    var = variable_runs(part)[1]
    if x_int.device.type == "cpu" and x_int.dtype == torch.int64 and x_int.is_contiguous() and x_int.dim() == 2:
        codes = torch.empty(var.numel(), x_int.shape[0], dtype=torch.int64)
        lib.pc_run_codes(
            codes.data_ptr(), x_int.data_ptr(), x_int.shape[0], x_int.shape[1], var.numel(), var.data_ptr(),
            part.num_cats, torch.get_num_threads(),
        )  # fmt: skip
    else:
        xv = x_int[:, var].T
        codes = torch.where(xv < 0, part.num_cats, xv).contiguous()
    if not inference:
        _CODES[part] = (x_int, x_int._version, codes)
    return codes


def lookup_rows(lib, part, table: torch.Tensor, codes: torch.Tensor, out: torch.Tensor) -> None:
    """out [m, B] = each row's table [m, K] entry at its run's codes (run_codes), 0 where missing:
    the lookup kernel. table and out are contiguous float32."""
    run = variable_runs(part)[0]
    lib.pc_table_inputs(
        out.data_ptr(), out.shape[1], part.size, run.data_ptr(), table.shape[1], table.data_ptr(), codes.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip


def count_at_codes(lib, part, f: torch.Tensor, codes: torch.Tensor, K: int) -> torch.Tensor:
    """[m, K + 1]: the sum of each row's f [m, B] (contiguous float32) at each of its codes, the
    missing ones in column K: the counting kernel."""
    run = variable_runs(part)[0]
    res = torch.empty(part.size, K + 1, dtype=f.dtype)  # the kernel zeroes it
    lib.pc_table_counts(
        res.data_ptr(),
        f.data_ptr(),
        f.shape[1],
        part.size,
        run.data_ptr(),
        K,
        codes.data_ptr(),
        torch.get_num_threads(),
    )
    return res


def _table_counts(lib, part, vars_t, f: torch.Tensor, x_int, deferred: bool = False) -> Mapping | None:
    """{"counts" [m, K], "missing" [m]} as Family.stats gives them, or None where the
    kernel does not apply (another dtype or device); `deferred`: a DeferredCounts instead."""
    if f.device.type != "cpu" or f.dtype != torch.float32 or not f.is_contiguous() or x_int.device.type != "cpu":
        return None
    codes = run_codes(lib, part, x_int)
    return DeferredCounts(lib, part, f, codes) if deferred else _counts(lib, part, f, codes)


def _counts(lib, part, f: torch.Tensor, codes: torch.Tensor) -> dict:
    K = part.num_cats
    res = count_at_codes(lib, part, f, codes, K)
    return {"counts": res[:, :K], "missing": res[:, K]}


class DeferredCounts(Mapping):
    """A table family's counts not formed yet: the flows [m, B] and codes they come from. The
    categorical M-step kernel counts and updates in one pass from them (pc_categorical_em);
    reading a key forms the counts (the counting kernel) as Family.stats would have. The flows
    are a view of the executor's kept buffer, so they must be used before its next pass: only
    a mini-batch EM step, which updates at once, asks for them (Executor.input_stats)."""

    def __init__(self, lib, part, flows: torch.Tensor, codes: torch.Tensor):
        self.lib, self.part, self.flows, self.codes = lib, part, flows, codes
        self._formed: dict | None = None

    def _form(self) -> dict:
        if self._formed is None:
            self._formed = _counts(self.lib, self.part, self.flows, self.codes)
        return self._formed

    def __getitem__(self, key):
        return self._form()[key]

    def __iter__(self):
        return iter(("counts", "missing"))

    def __len__(self) -> int:
        return 2


def _categorical_m_step(lib, part, h, stats: Mapping, step: float, pseudocount: float) -> bool:
    logits = h.logits.data
    if logits.device.type != "cpu" or logits.dtype != torch.float32 or not logits.is_contiguous():
        return False
    if isinstance(stats, DeferredCounts) and stats._formed is None:  # counts and update in one pass
        run = variable_runs(part)[0]
        f = stats.flows
        lib.pc_categorical_em(
            logits.data_ptr(), f.data_ptr(), f.shape[1], part.size, run.data_ptr(), part.num_cats,
            stats.codes.data_ptr(), step, pseudocount, torch.get_num_threads(),
        )  # fmt: skip
    else:
        counts, missing = stats["counts"], stats["missing"]
        if counts.dtype != torch.float32 or counts.stride(1) != 1 or missing.dtype != torch.float32:
            return False
        missing = missing.contiguous()
        lib.pc_categorical_m_step(
            logits.data_ptr(), logits.shape[0], logits.shape[1], counts.data_ptr(), counts.stride(0),
            missing.data_ptr(), step, pseudocount, torch.get_num_threads(),
        )  # fmt: skip
    _NORMALISED[part] = (weakref.ref(h.logits), h.logits._version, True)  # writes through data_ptr keep the version
    return True


def log_table(part, params: dict) -> torch.Tensor | None:
    """The family's table of log-values [m, K], as `Family.log_table`, except where a
    categorical's logits are normalised log-probabilities already: then the logits themselves, so
    that the forward pass after an EM step skips a log-softmax over [m, K] (6.4 M values on an
    MNIST HCLT at latents 32: about 2.5 ms of a 70 ms step). The M-step kernel leaves them so;
    other logits (a loaded model's, a resumed run's, an Adam-trained model's) are checked once per
    version (`normalised`), so that a run resumed from a checkpoint reads the same table as the
    run it continues, and the batches of an evaluation pay for the check once. The version
    counter says whether anything changed them since (an optimiser's step, load_state_dict, an
    update of the torch backend's: all in place through torch)."""
    fam, logits = family(part.dist), params.get("logits")
    if not isinstance(fam, Categorical) or logits is None:
        return fam.log_table(part, params)
    kept = _NORMALISED.get(part)
    if kept is not None and kept[0]() is logits and kept[1] == logits._version:
        return logits.detach() if kept[2] else fam.log_table(part, params)
    table = fam.log_table(part, params)
    found = normalised(logits, table)
    _NORMALISED[part] = (weakref.ref(logits), logits._version, found)  # checked once per version either way
    return logits.detach() if found else table


# |log sum_k p_k| of a row: the M-step kernel's rows reach 2e-6 (mean 3e-7) on an MNIST HCLT, and
# a resumed run must find its checkpoint's rows normalised as the run it continues did.
NORMALISED_TOLERANCE = 1e-5


def normalised(logits: torch.Tensor, table: torch.Tensor) -> bool:
    """Whether every row of logits is its log-softmax (table) to NORMALISED_TOLERANCE: the two
    differ by the row's log-sum-exp."""
    with torch.no_grad():
        shift = torch.where(torch.isfinite(table), logits - table, 0.0)
        return bool(shift.abs().amax() <= NORMALISED_TOLERANCE) if shift.numel() else True


CPU_M_STEPS = {Categorical: _categorical_m_step}


class TableLookup(torch.autograd.Function):
    """[m, B] input rows of a family with a table of log-values [m, K]: table[r][code] by the
    lookup kernel, 0 where the value is missing. The table's gradient is the counting kernel's
    sum of each row's gradients at each code: the gather's backward, without autograd's
    scatter over an [m, B] index (a third of an Adam step on a plants HCLT at K = 128)."""

    @staticmethod
    def forward(ctx, table, lib, part, x_int):
        codes = run_codes(lib, part, x_int)
        t = table.detach().contiguous()
        out = torch.empty(part.size, x_int.shape[0], dtype=t.dtype)
        lookup_rows(lib, part, t, codes, out)
        ctx.lib, ctx.part, ctx.K = lib, part, t.shape[1]
        ctx.save_for_backward(codes)
        return out

    @staticmethod
    def backward(ctx, grad):
        (codes,) = ctx.saved_tensors
        res = count_at_codes(ctx.lib, ctx.part, grad.contiguous(), codes, ctx.K)
        return res[:, : ctx.K], None, None, None


def table_block(lib, part, params: dict, x_int) -> torch.Tensor | None:
    """An input partition's rows through TableLookup, or None where the kernels do not apply (no
    table for the family, another dtype or device)."""
    if x_int.device.type != "cpu":
        return None
    table = family(part.dist).log_table(part, params)
    if table is None or table.dtype != torch.float32 or table.device.type != "cpu":
        return None
    return TableLookup.apply(table, lib, part, x_int)


def cpu_counts(name: str):
    """The counting kernel of the family `name`, or None (it keeps its own statistics)."""
    return _table_counts if isinstance(family(name), CountsFamily) else None


def cpu_m_step(name: str):
    """The M-step kernel of the family `name`, or None."""
    return CPU_M_STEPS.get(type(family(name)))
