"""Small circuit passes: `verify` (check every rule) and `init` (fill missing parameters)."""

from __future__ import annotations

import dataclasses

import numpy as np
from pccompile.ir import Circuit, InputNode, SumNode, verify
from pccompile.ir.options import Seed

from .base import Pass, PassContext, register


@register
@dataclasses.dataclass(frozen=True)
class Verify(Pass):
    """Check acyclicity, smoothness, decomposability, sizes, domains and parameters."""

    name = "verify"
    require_params: bool = False

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        verify(circuit, require_params=self.require_params)
        return circuit


def random_sum_weights(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weights ∝ U(0.6, 1.4) on the edges of `mask`, normalised per row (the papers' init)."""
    w = rng.random(mask.shape, dtype=np.float32) * np.float32(0.8) + np.float32(0.6)
    w *= mask
    return w / w.sum(1, keepdims=True)


@register
@dataclasses.dataclass(frozen=True)
class InitParams(Pass):
    """Give every node without parameters random ones (seeded; existing ones are kept)."""

    name = "init"
    seed: Seed = 0

    def run(self, circuit: Circuit, ctx: PassContext | None = None) -> Circuit:
        rng = np.random.default_rng(self.seed)
        params = dict(circuit.params)
        for nid, node in circuit.nodes.items():
            if nid in params:
                continue
            if isinstance(node, InputNode):
                params[nid] = node.dist.random_params(node.size, rng)
            elif isinstance(node, SumNode) and node.tie is None:
                params[nid] = {"weights": random_sum_weights(circuit.edge_mask(node), rng)}
        return circuit.with_params(params)
