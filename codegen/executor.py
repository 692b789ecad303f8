"""The interface a backend implements to run a lowered Program (both backends implement it on
their own; the runtime, flows, EM and the queries use nothing else).

Plain tensors cross it: batches encoded by pccompile.runtime.batch (`x_int [B, V]` long with -1 for
missing, `x_real [B, V]` float with NaN or None), the input partitions' parameters as one dict
of tensors per partition (pccompile.runtime.params names them), normalised log-weights `logw` ([P], or
[P + 1] with the padding slot), and log-value buffers `mars [rows, B]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from pccompile.ir import Program


@runtime_checkable
class Executor(Protocol):
    program: Program
    out_row: int  # the root's row in buffers from node_values (complete=False) and backward_flows
    root_row: int  # the root's row in Program order (complete buffers, forward_max)
    num_inputs: int  # input rows, which start at FIRST_ROW in every buffer
    tensors: torch.nn.Module  # codegen.layers.ProgramTensors: the Program-order partitions decode reads

    def node_values(
        self,
        x_int: torch.Tensor,
        x_real: torch.Tensor | None,
        inputs: list[dict[str, torch.Tensor]],
        logw: torch.Tensor,
        complete: bool = False,
        reuse: bool = False,
    ) -> torch.Tensor:
        """Every node's log-value for an encoded batch, without autograd (inference, flows, EM).
        `complete`: every row written, in Program order (sampling and MPE decode from it).
        `reuse`: the executor may return a buffer it keeps, valid until its next reuse (for
        callers done with it by then; a backend may ignore it)."""

    def forward_mars(self, input_logp: torch.Tensor, logw: torch.Tensor, complete: bool = True) -> torch.Tensor:
        """The same from the input rows' log-probabilities [R_in, B] (the autograd path)."""

    def forward_max(self, input_logp: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Max-product values of every row, in Program order."""

    def decode(
        self, mars: torch.Tensor, logw: torch.Tensor, sample: bool = False, gen: torch.Generator | None = None
    ) -> torch.Tensor:
        """The top-down walk from complete, Program-order values `mars`: active [rows, B] marks
        each sample's chosen subcircuit (argmax at sums for MPE from forward_max's values, a draw
        for sampling from node_values')."""

    def backward_flows(
        self, mars: torch.Tensor, logw: torch.Tensor, grad_root: torch.Tensor, reuse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(node flows [rows, B], parameter flows [P]) for a root flow grad_root [B]; `reuse` as
        for node_values."""

    def em_dense_blocks(
        self, logits: torch.Tensor, logw: torch.Tensor, flows: torch.Tensor, step, pseudocount: float
    ) -> bool:
        """Apply the EM update to the dense weight blocks in place if this backend has a kernel
        for it, and say so; False leaves every weight to the runtime's update."""

    def em_inputs(self, part, h, stats: Mapping[str, torch.Tensor], step, pseudocount: float) -> bool:
        """Apply the M-step to one input partition's tensors `h` in place from its statistics if
        this backend has a kernel for its family, and say so; False leaves it to the family's
        own update (Family.m_step)."""

    def input_block(self, part, params: dict[str, torch.Tensor], vars_t, x_int, x_real) -> torch.Tensor:
        """One input partition's [m, B] log-probabilities for the autograd path (gradients flow
        back to `params`); a backend may compute them, and their gradients, in kernels."""

    def input_stats(
        self, part, vars_t, flows: torch.Tensor, x_int, x_real, deferred: bool = False
    ) -> Mapping[str, torch.Tensor] | None:
        """One input partition's EM statistics from its flows [m, B] if this backend has a kernel
        for its family (the same keys as Family.stats gives), else None. `deferred`: the caller
        hands them to em_inputs before this executor's next pass (a mini-batch EM step), so a
        backend may leave them unformed until then and form them in its M-step."""


class ProgramOrderDecoder:
    """`Executor.decode` for a backend whose complete buffers are in Program order and that keeps
    its Program-order partitions as `self.tensors`: the shared walk of codegen.layers."""

    tensors: torch.nn.Module

    def decode(self, mars, logw, sample: bool = False, gen: torch.Generator | None = None) -> torch.Tensor:
        from .layers import decode

        return decode(self.tensors, mars, logw, sample=sample, gen=gen)
