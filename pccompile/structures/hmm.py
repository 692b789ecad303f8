"""Hidden Markov model as a circuit: z_1 -> ... -> z_T with emissions p(x_t | z_t).

m_T = emit_T; m_t = emit_t * (A m_{t+1}); root = pi . m_1. With `homogeneous` the transition
sums are tied across time (one matrix A). Emissions are per position (inputs are not tied).
"""

from __future__ import annotations

from pccompile import builder
from pccompile.ir import ArgumentError, Region


def hmm(length: int, latents: int, vocab: int, *, homogeneous: bool = True, first_var: int = 0) -> builder.Vec:
    if length < 1 or latents < 1 or vocab < 2:
        raise ArgumentError("hmm needs length >= 1, latents >= 1 and vocab >= 2")

    def emit(t: int) -> builder.Vec:
        return builder.input_vector(first_var + t, latents, vocab)

    def latent(t: int, vec: builder.Vec) -> builder.Vec:
        vec.region = Region(f"Z[{t}]", (first_var + t,))  # rows: the states of z_t
        return vec

    m = latent(length - 1, emit(length - 1))
    shared = None
    for t in range(length - 2, -1, -1):
        trans = builder.summate(m, size=latents, tie=shared if homogeneous else None)
        if homogeneous and shared is None:
            shared = trans
        m = latent(t, builder.multiply(emit(t), trans))
    return builder.summate(m, size=1)
