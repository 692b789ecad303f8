"""Input families in learning: the sufficient statistics a partition's flows reduce to (the
E-step, pccompile.flows) and the M-step that turns them into new parameters (learn.em).

One object per family in STATISTICS. Nothing here waits for the device, so the EM step can be
captured as a CUDA graph. Conventions of the M-step: step size a (1 = plain EM) mixes old and
new parameters; the pseudocount pc smooths (Laplace); flow on rows whose value is missing counts
at the current parameters, so that missing data pulls nothing.
"""

from __future__ import annotations

import torch

from .codegen.torch_backend.inputs import observed, variable_codes
from .maxent import entropic_probs, row_sum_last


def _observed_flows(part, vars_t, f: torch.Tensor, x_int, x_real):
    """(values [m, B], 0 where missing; the flows f [m, B] of the observed entries, 0 where missing).
    The flow of missing entries is f - observed flows."""
    xv, miss = observed(part, vars_t, x_int, x_real)
    return xv, torch.where(miss, torch.zeros_like(f), f)


def _mix(old: torch.Tensor, new: torch.Tensor, a) -> torch.Tensor:
    return (1 - a) * old + a * new


class Statistics:
    def stats(self, part, vars_t, f: torch.Tensor, x_int, x_real) -> dict[str, torch.Tensor]:
        """Reduce the partition's flows f [m, B] to its sufficient statistics."""
        raise NotImplementedError  # pragma: no cover - interface

    def m_step(self, part, h, s: dict[str, torch.Tensor], a, pc: float, dtype, entropy=None) -> None:
        """Write the new parameters into the partition's tensors `h` in place. `entropy` [m]: the
        weight b of each row's entropy in an entropy-regularised M-step (pccompile.maxent);
        families without a finite set of values leave it unused."""
        raise NotImplementedError  # pragma: no cover - interface


class _Counts(Statistics):
    """Categorical and Bernoulli: flow per (row, category), and the flow of missing values.

    When the rows come in runs of L per variable (HCLT, and any node vector per variable), every
    run's flows [L, B] are added by index into its counts [L, k + 1] at the batch's value codes
    (column k: missing): one pass over the flows, and no [rows, B] index or mask tensor, nor a
    one-hot [V, B, k + 1] matrix (which on an MNIST HCLT cost 40 times the scatter)."""

    def stats(self, part, vars_t, f, x_int, x_real):
        k, L = part.num_cats, part.run_length
        if L is not None:
            nv, B = part.size // L, f.shape[1]
            code = variable_codes(part, vars_t, x_int)  # [nv, B], k where missing
            res = torch.zeros(nv, L, k + 1, dtype=f.dtype, device=f.device)
            res.scatter_add_(2, code.unsqueeze(1).expand(nv, L, B), f.reshape(nv, L, B))
            res = res.reshape(part.size, k + 1)
            return {"counts": res[:, :k], "missing": res[:, k]}
        xv, fo = _observed_flows(part, vars_t, f, x_int, x_real)
        counts = torch.zeros(part.size, k, dtype=f.dtype, device=f.device)
        counts.scatter_add_(1, xv, fo)
        return {"counts": counts, "missing": (f - fo).sum(1)}

    def probs(self, h) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def store(self, h, theta: torch.Tensor) -> None:
        raise NotImplementedError  # pragma: no cover - interface

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
        self.store(h, _mix(old, new, a).clamp_min(0))


class _CategoricalCounts(_Counts):
    def probs(self, h):
        return torch.softmax(h.logits, dim=1)

    def store(self, h, theta):
        h.logits.copy_(theta.log())


class _BernoulliCounts(_Counts):
    def probs(self, h):
        p1 = torch.sigmoid(h.logit)
        return torch.stack([1 - p1, p1], 1)

    def store(self, h, theta):
        h.logit.copy_(theta[:, 1].log() - theta[:, 0].log())


class _Binomial(Statistics):
    """Successes and trials: S = sum f x, T = n sum f (the flow of missing values counts at the
    current p); p <- (1 - a) p + a (S + pc / 2) / (T + pc)."""

    def stats(self, part, vars_t, f, x_int, x_real):
        xv, fo = _observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv.to(f.dtype)).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        n = float(part.num_cats - 1)
        p = torch.sigmoid(h.logit)
        w, wx, miss = (s[k].to(dtype) for k in ("w", "wx", "missing"))
        succ, trials = wx + miss * n * p, n * (w + miss)
        new = torch.where(trials + pc > 0, (succ + pc / 2) / (trials + pc).clamp_min(1e-300), p)
        q = _mix(p, new, a).clamp(1e-12, 1 - 1e-12)
        h.logit.copy_(q.log() - (1 - q).log())


class _Moments(Statistics):
    """Gaussian: weighted moments with the pseudocount as a prior at the current values, and a
    variance floor (`min_std`, larger than the evaluation floor)."""

    min_std = 1e-3

    def stats(self, part, vars_t, f, x_int, x_real):
        xv, fo = _observed_flows(part, vars_t, f, x_int, x_real)
        return {"w": fo.sum(1), "wx": (fo * xv).sum(1), "wxx": (fo * xv * xv).sum(1), "missing": (f - fo).sum(1)}

    def m_step(self, part, h, s, a, pc, dtype, entropy=None):
        mean, std = h.mean, h.log_std.exp()
        w = s["w"].to(mean.dtype)
        denom = w + pc
        safe = denom > 0
        m_new = torch.where(safe, (s["wx"] + pc * mean) / denom.clamp_min(1e-300), mean)
        ex2 = torch.where(safe, (s["wxx"] + pc * (std**2 + mean**2)) / denom.clamp_min(1e-300), std**2 + mean**2)
        var_new = (ex2 - m_new**2).clamp_min(self.min_std**2)
        h.mean.copy_(_mix(mean, m_new, a))
        h.log_std.copy_(0.5 * _mix(std**2, var_new, a).clamp_min(self.min_std**2).log())


STATISTICS: dict[str, Statistics] = {
    "categorical": _CategoricalCounts(),
    "bernoulli": _BernoulliCounts(),
    "binomial": _Binomial(),
    "gaussian": _Moments(),
}
