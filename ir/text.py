"""The IR as text: one line per node vector, stable enough to test passes against
(`pcc show --ir`, and the filecheck-style pass tests)."""

from __future__ import annotations

import numpy as np

from .circuit import Circuit
from .nodes import InputNode, ProductNode


def _rows(rows: np.ndarray) -> str:
    shown = [int(r) for r in rows]
    return "[[" + ", ".join(map(str, shown[:8])) + (", ..." if len(shown) > 8 else "") + "]]"


def format_node(circuit: Circuit, nid: int) -> str:
    n = circuit.nodes[nid]
    if isinstance(n, InputNode):
        desc = f"input   {n.dist.name}({circuit.variables[n.var].name})"
    elif isinstance(n, ProductNode):
        kids = []
        for k, c in enumerate(n.children):
            ix = None if n.index is None else n.index[k]
            kids.append(circuit.nodes[c].name + ("" if ix is None else _rows(ix)))
        desc = "product " + ", ".join(kids)
    else:
        desc = "sum     " + ", ".join(circuit.nodes[c].name for c in n.children)
        if n.mask is not None:
            desc += f"  [mask {int(np.asarray(n.mask).sum())}/{np.asarray(n.mask).size} edges]"
        if n.tie is not None:
            desc += f"  [tied to {circuit.nodes[n.tie].name}]"
    params = "  {params}" if nid in circuit.params else ""
    root = "  <- root" if nid == circuit.root else ""
    return f"  %{nid:<4d} {n.name:>12s}[{n.size}] = {desc}{params}{root}"


def format_circuit(circuit: Circuit) -> str:
    """A header line, then one line per node vector in the circuit's order."""
    return "\n".join([repr(circuit)] + [format_node(circuit, nid) for nid in circuit.nodes])
