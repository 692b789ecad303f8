"""`normalize`: simplify structure without changing the distribution.

- dead-node elimination (keep only what the root reaches);
- single-child elementwise products are replaced by their child;
- product-of-product chains (elementwise, identity index) are flattened into one product.
"""

from __future__ import annotations

import dataclasses

from pccompile.ir import Circuit, ProductNode, SumNode

from .base import Pass, PassContext, register


def _is_identity_product(node) -> bool:
    return isinstance(node, ProductNode) and node.index is None


@register
@dataclasses.dataclass(frozen=True)
class Normalize(Pass):
    name = "normalize"

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        nodes = dict(circuit.nodes)
        alias: dict[int, int] = {}

        def resolve(i: int) -> int:
            while i in alias:
                i = alias[i]
            return i

        for nid, node in list(nodes.items()):
            if isinstance(node, (ProductNode, SumNode)):
                children = tuple(resolve(c) for c in node.children)
                if _is_identity_product(node):
                    flat: list[int] = []
                    for c in children:
                        child = nodes[c]
                        flat.extend(child.children if _is_identity_product(child) else (c,))
                    children = tuple(flat)
                    if len(children) == 1 and nodes[children[0]].size == node.size and nid != circuit.root:
                        alias[nid] = children[0]
                        continue
                if children != node.children:
                    node = dataclasses.replace(node, children=children)
                nodes[nid] = node
        root = resolve(circuit.root)
        pruned = circuit.replace(nodes=nodes, root=root)
        keep = pruned.reachable()
        nodes = {i: nodes[i] for i in keep}
        params = {i: p for i, p in circuit.params.items() if i in nodes}
        regions = dict(circuit.regions)
        for nid, region in circuit.regions.items():  # a bypassed node's region moves to what replaced it
            if nid in alias:
                regions.setdefault(resolve(nid), region)
        return circuit.replace(nodes=nodes, root=root, params=params, regions=regions)
