"""Analyses the passes read, computed by the driver: aggregate edge flows of a circuit on data.

The flows are those of the circuit as given (its own node ids), computed with the runtime's flow
code in batches on a device, and handed over as plain arrays {sum node id: [size, K]}."""

from __future__ import annotations

import numpy as np

from pccompile.ir import FIRST_ROW, ArgumentError, Circuit, verify


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


def provider_for(data=None, *, device=None, group=None):
    """The PassContext provider that computes each analysis a pass asks for (`data`: the rows
    those that need data are computed on)."""

    def provide(name: str, circuit: Circuit, pass_=None):
        if name == "edge_flows":
            if data is None:
                who = getattr(pass_, "name", "?")
                raise ArgumentError(
                    f"pass '{who}' needs the 'edge_flows' analysis, which needs data: pass data=x to "
                    "pccompile.compile or pccompile.run_passes"
                )
            return circuit_edge_flows(circuit, data, device=device, group=group)
        if name == "evidence_log_probs":
            return evidence_log_probs(circuit, pass_.values())
        raise ArgumentError(f"no analysis named '{name}'")

    return provide


def evidence_log_probs(circuit: Circuit, evidence: dict[str, float]) -> dict[int, np.ndarray]:
    """log p_i(e) for every input node i over an evidence variable ({node id: [size]}, float64),
    by the runtime's own input kernels on one row holding the evidence."""
    import torch

    from ..passes import lower
    from ..runtime import CompiledCircuit

    verify(circuit, require_params=True)
    model = CompiledCircuit(circuit, lower(circuit), dtype=torch.float64)
    index = {v.name: k for k, v in enumerate(circuit.variables)}
    row = np.full((1, circuit.num_vars), np.nan)
    for name, value in evidence.items():
        row[0, index[name]] = value
    x_int, x_real = model.encode(torch.as_tensor(row))
    with torch.no_grad():
        lp = model.input_log_probs(x_int, x_real)[:, 0].numpy()
    wanted = {index[name] for name in evidence}
    out = {}
    for nid, n in circuit.nodes.items():
        if getattr(n, "var", None) in wanted and nid in model.program.node_rows:
            first, size = model.program.node_rows[nid]
            out[nid] = lp[first - FIRST_ROW : first - FIRST_ROW + size].astype(np.float64)
    return out
