"""Analyses the passes read, computed by the driver: aggregate edge flows of a circuit on data.

The flows are those of the circuit as given (its own node ids), computed with the runtime's flow
code in batches on a device, and handed over as plain arrays {sum node id: [size, K]}."""

from __future__ import annotations

import numpy as np

from pccompile.ir import ArgumentError, Circuit, verify


def circuit_edge_flows(
    circuit: Circuit, data, *, batch_size: int = 512, device=None, group=None
) -> dict[int, np.ndarray]:
    """F_{n,c}(data) for every untied sum node (tied sums' flows added into their source's).
    `group` (learn.distributed): each rank computes the flows of its shard of the rows and the
    sums are all-reduced, so every rank sees the same flows and prunes the same edges."""
    import torch

    from ..io.data import as_rows
    from ..passes import lower
    from ..runtime import CompiledCircuit
    from .flows import edge_flows

    verify(circuit, require_params=True)
    model = CompiledCircuit(circuit, lower(circuit), dtype=torch.float64)
    if device is not None:
        model = model.to(device)
    x = as_rows(data, "the data for the analysis")
    if x.shape[0] == 0:
        raise ArgumentError("the data for the analysis has no rows")
    return edge_flows(model, x, batch_size, group=group)


def provider_for(data, *, device=None, group=None):
    """The PassContext provider that computes each analysis a pass asks for on `data`."""

    def provide(name: str, circuit: Circuit):
        if name == "edge_flows":
            return circuit_edge_flows(circuit, data, device=device, group=group)
        raise ArgumentError(f"no analysis named '{name}'")

    return provide
