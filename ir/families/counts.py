"""The EM of families over K values whose statistics are counts per value (categorical and
Bernoulli): flow per (row, value), and the flow of missing values.

When the rows come in runs of L per variable (HCLT, and any node vector per variable), every
run's flows [L, B] are added by index into its counts [L, K + 1] at the batch's value codes
(column K: missing): one pass over the flows, and no [rows, B] index or mask tensor, nor a
one-hot [V, B, K + 1] matrix (which on an MNIST HCLT cost 40 times the scatter)."""

from __future__ import annotations

from .base import Family, mix, observed_flows, variable_codes
from .lazy import torch
from .maxent import entropic_probs, row_sum_last


class CountsFamily(Family):
    """Statistics {"counts" [m, K], "missing" [m]}; the M-step on the simplex of `probs`, with
    `store` writing probabilities back into the family's tensors. The CPU target's counting
    kernel applies to every such family."""

    softened = True

    def store(self, h, theta) -> None:
        raise NotImplementedError

    def stats(self, part, p, vars_t, f, x_int, x_real):
        k, L = part.num_cats, part.run_length
        if L is not None:
            nv, B = part.size // L, f.shape[1]
            code = variable_codes(part, vars_t, x_int)  # [nv, B], k where missing
            res = torch.zeros(nv, L, k + 1, dtype=f.dtype, device=f.device)
            res.scatter_add_(2, code.unsqueeze(1).expand(nv, L, B), f.reshape(nv, L, B))
            res = res.reshape(part.size, k + 1)
            return {"counts": res[:, :k], "missing": res[:, k]}
        xv, fo = observed_flows(part, vars_t, f, x_int, x_real)
        counts = torch.zeros(part.size, k, dtype=f.dtype, device=f.device)
        counts.scatter_add_(1, xv, fo)
        return {"counts": counts, "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        """theta_k <- (1 - a) theta_k + a (F_k + pc / K + F_miss theta_k) / (F + F_miss + pc);
        with `entropy`, the new theta maximises sum_k (F_k + pc / K + F_miss theta_k) log theta_k
        + b H(theta) instead."""
        counts, miss = s["counts"].to(dtype), s["missing"].to(dtype).unsqueeze(1)
        old = self.probs(h)
        if entropy is not None:
            b = entropy.to(dtype).unsqueeze(1).expand_as(old)
            new = entropic_probs(counts + pc / counts.shape[1] + miss * old, b, row_sum_last).to(dtype)
        else:
            denom = counts.sum(1, keepdim=True) + miss + pc
            new = torch.where(denom > 0, (counts + pc / counts.shape[1] + miss * old) / denom.clamp_min(1e-300), old)
        self.store(h, mix(old, new, a).clamp_min(0))
