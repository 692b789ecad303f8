"""Input families' kernels on the CPU target, one table per job, keyed by family: the EM counts of
families over K values (`CPU_COUNTS`: four rows at a time, at the batch's codes) and the M-step of
a categorical partition as one pass over its logits (`CPU_M_STEPS`; the family's torch update
makes about ten passes over [rows, K] tensors). A family without an entry takes its own code
(pccompile.statistics); the table lookup of the forward pass serves every family with a
`log_table` and needs no entry."""

from __future__ import annotations

import torch


def _table_counts(lib, part, vars_t, f: torch.Tensor, x_int) -> dict | None:
    """{"counts" [m, K], "missing" [m]} as pccompile.statistics gives them, or None where the
    kernel does not apply (rows not in runs per variable, another dtype or device)."""
    from ..torch_backend.inputs import variable_codes

    if part.run_length is None or f.device.type != "cpu" or f.dtype != torch.float32 or not f.is_contiguous():
        return None
    K, B = part.num_cats, f.shape[1]
    codes = variable_codes(part, vars_t, x_int).contiguous()
    res = torch.zeros(part.size, K + 1, dtype=f.dtype)
    lib.pc_table_counts(
        res.data_ptr(), f.data_ptr(), B, part.size, part.run_length, K, codes.data_ptr(), torch.get_num_threads()
    )
    return {"counts": res[:, :K], "missing": res[:, K]}


def _categorical_m_step(lib, part, h, stats: dict, step: float, pseudocount: float) -> bool:
    logits, counts, missing = h.logits.data, stats["counts"], stats["missing"]
    usable = logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.is_contiguous()
    if not usable or counts.dtype != torch.float32 or counts.stride(1) != 1 or missing.dtype != torch.float32:
        return False
    missing = missing.contiguous()
    lib.pc_categorical_m_step(
        logits.data_ptr(), logits.shape[0], logits.shape[1], counts.data_ptr(), counts.stride(0), missing.data_ptr(),
        step, pseudocount, torch.get_num_threads(),
    )  # fmt: skip
    return True


CPU_COUNTS = {"categorical": _table_counts, "bernoulli": _table_counts}
CPU_M_STEPS = {"categorical": _categorical_m_step}
