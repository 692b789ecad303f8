"""Signed circuits: sums with negative weights, evaluated in signed log space, whose squares
are densities (subtractive mixtures); trained by gradient descent, sampled autoregressively."""

from .circuit import SignedCircuit
from .sampling import sample
from .train import Epoch, fit, mean_log_prob

__all__ = ["Epoch", "SignedCircuit", "fit", "mean_log_prob", "sample"]
