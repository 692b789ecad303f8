"""`layer`: group the reachable nodes by topological depth (the first lowering step).

Depth 0 holds the inputs; every later level holds the products and the sums whose deepest
child sits one level below, so all nodes of a level can run in one launch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pccompile.ir import Circuit, InputNode, ProductNode


@dataclass(frozen=True)
class LayerPlan:
    inputs: tuple[int, ...]
    levels: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # per depth: (products, sums)


def layer(circuit: Circuit) -> LayerPlan:
    depth = circuit.depths()
    reach = circuit.reachable()
    inputs = tuple(i for i in reach if isinstance(circuit.nodes[i], InputNode))
    top = max(depth[i] for i in reach)
    prods: list[list[int]] = [[] for _ in range(top + 1)]
    sums: list[list[int]] = [[] for _ in range(top + 1)]
    for i in reach:
        if depth[i] > 0:
            (prods if isinstance(circuit.nodes[i], ProductNode) else sums)[depth[i]].append(i)
    levels = tuple((tuple(prods[d]), tuple(sums[d])) for d in range(1, top + 1))
    return LayerPlan(inputs, levels)
