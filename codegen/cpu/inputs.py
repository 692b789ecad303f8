"""Input families' kernels on the CPU target, one entry per family that has one: the M-step of a
categorical partition as one pass over its logits (the family's torch update makes about ten
passes over [rows, K] tensors). A family without an entry takes its own update
(pccompile.statistics); the table lookup of the forward pass serves every family with a
`log_table` and needs no entry."""

from __future__ import annotations

import torch


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


CPU_M_STEPS = {"categorical": _categorical_m_step}
