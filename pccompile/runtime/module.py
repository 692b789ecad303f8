"""CompiledCircuit: a compiled probabilistic circuit as an ordinary torch.nn.Module.

Parameters are unconstrained (sum log-weights normalised per node on the fly; input logits and
log-std), so the module trains with any torch optimiser; EM writes the same tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pccompile.codegen.backends import BACKENDS, make_executor
from pccompile.codegen.torch_backend import CircuitLogLikelihood, partition_log_probs
from pccompile.ir import Circuit, Program

from .batch import encode_batch, variable_support
from .cuda_graphs import GraphCache
from .params import (
    SumRows,
    circuit_params_from_runtime,
    draw_missing,
    input_params_from_circuit,
    sum_logits_from_circuit,
)


class CompiledCircuit(nn.Module):
    def __init__(
        self,
        circuit: Circuit,
        program: Program,
        *,
        backend: str = "torch",
        options: dict | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        """Parameters the circuit leaves out stay undrawn until `init_missing(seed)`, which
        compile() calls once the module is on its device (so a GPU draws its own)."""
        super().__init__()
        self.circuit = circuit
        self.program = program
        self.backend = backend
        self.options = dict(options or {})
        self.executor = make_executor(program, backend, self.options, dtype)
        staging = np.float64 if dtype == torch.float64 else np.float32
        if not any(lay.node in circuit.params for lay in program.sum_layout):
            # nothing to copy: allocate on the target device (GPU compile: no host staging of
            # hundreds of millions of weights) and let init_missing draw them all there
            n = program.num_sum_params
            self.sum_logits = nn.Parameter(torch.zeros(n, dtype=dtype, device=device))
            sum_missing = [(0, n)] if n else []
        else:
            flat, sum_missing = sum_logits_from_circuit(circuit, program, staging)
            self.sum_logits = nn.Parameter(torch.as_tensor(flat, dtype=dtype))
        self.sum_rows = SumRows(program)
        self.inputs = nn.ModuleList()
        input_arrays, input_missing = input_params_from_circuit(circuit, program, staging)
        for part, arrays in zip(program.input_partitions, input_arrays):
            holder = nn.Module()
            for k, v in arrays.items():
                holder.register_parameter(k, nn.Parameter(torch.as_tensor(v, dtype=dtype)))
            holder.register_buffer("vars", torch.as_tensor(part.vars), persistent=False)
            self.inputs.append(holder)
        self._missing = (sum_missing, input_missing)
        self._graph_caches: dict = {}

    def init_missing(self, seed: int) -> None:
        """Draw the parameters the circuit left out, on the module's current device (compile()
        moves the module to its device first, so a GPU draws them itself)."""
        sum_missing, input_missing = self._missing
        draw_missing(self.sum_logits.data, self.inputs, self.program.input_partitions, sum_missing, input_missing, seed)
        self._missing = ([], [])

    # -- CUDA graphs ------------------------------------------------------------------------
    @property
    def cuda_graphs(self) -> bool:
        """Whether steps on CUDA tensors are captured and replayed as CUDA graphs: the triton
        backend (the torch path waits on the device to repair underflow, so it cannot be
        captured), unless compiled with cuda_graphs=False or switched off by assignment."""
        return BACKENDS[self.backend].captures_graphs and bool(self.options.get("cuda_graphs", True))

    @cuda_graphs.setter
    def cuda_graphs(self, on: bool) -> None:
        self.options["cuda_graphs"] = bool(on)

    def graph_cache(self, key, fn) -> GraphCache:
        """The GraphCache for `key`, created around `fn` on first use (see pccompile.runtime.cuda_graphs)."""
        cache = self._graph_caches.get(key)
        if cache is None:
            cache = self._graph_caches[key] = GraphCache(fn)
        return cache

    def _apply(self, fn, *args, **kwargs):
        self._graph_caches.clear()  # moved or cast: captured graphs point at the old tensors
        return super()._apply(fn, *args, **kwargs)

    # -- properties -----------------------------------------------------------------------
    @property
    def num_vars(self) -> int:
        return self.program.num_vars

    @property
    def device(self) -> torch.device:
        return self.sum_logits.device

    @property
    def dtype(self) -> torch.dtype:
        return self.sum_logits.dtype

    # -- evaluation -------------------------------------------------------------------------
    def encode(self, x, missing=None):
        if not hasattr(self, "_support"):
            self._support = variable_support(self.program)
        return encode_batch(
            x,
            self.program.var_cats,
            self.program.var_names,
            missing,
            device=self.device,
            dtype=self.dtype,
            support=self._support,
        )

    def sum_log_weights(self, padded: bool = False) -> torch.Tensor:
        """Normalised log-weights [P], one per sum edge, in Program order (`padded`: [P + 1], with
        the executors' padding slot, log 0, at the end, which saves them a copy)."""
        return self.sum_rows.log_softmax(self.sum_logits, padded)

    def input_params(self) -> list[dict[str, torch.Tensor]]:
        """Each input partition's parameter tensors by name (what the executors read)."""
        return [dict(h.named_parameters()) for h in self.inputs]

    def input_log_probs(self, x_int: torch.Tensor, x_real: torch.Tensor | None, tables=None) -> torch.Tensor:
        """[R_in, B] log-probabilities of every input row. `tables`: per partition, None or a
        [m, K] table of log-values that replaces the family's own (softened evidence)."""
        return torch.cat(self.input_blocks(x_int, x_real, tables), 0)

    def input_blocks(self, x_int: torch.Tensor, x_real: torch.Tensor | None, tables=None) -> list[torch.Tensor]:
        """The same per input partition: [m, B] blocks in row order (what the autograd path
        hands the executor, so they need not be concatenated)."""
        tables = tables or [None] * len(self.inputs)
        return [
            self.executor.input_block(part, dict(h.named_parameters()), h.vars, x_int, x_real)
            if table is None
            else partition_log_probs(part, dict(h.named_parameters()), h.vars, x_int, x_real, table)
            for part, h, table in zip(self.program.input_partitions, self.inputs, tables)
        ]

    def node_values(self, x_int, x_real, logw: torch.Tensor | None = None, complete: bool = False, reuse: bool = False):
        """mars [rows, B]: every node's log-value for an encoded batch, without autograd (for
        inference, flows and EM). The triton executor writes the input rows in place. `reuse`:
        the executor's kept buffer, overwritten by the next reusing call."""
        logw = self.sum_log_weights(padded=True) if logw is None else logw
        return self.executor.node_values(x_int, x_real, self.input_params(), logw, complete, reuse)

    def forward(self, x, missing=None) -> torch.Tensor:
        """log p(x) per row; missing entries (-1 / NaN / `missing` mask) are marginalised."""
        x_int, x_real = self.encode(x, missing)
        return self.log_prob_encoded(x_int, x_real)

    def log_prob_encoded(self, x_int, x_real) -> torch.Tensor:
        if not torch.is_grad_enabled() and self.cuda_graphs and x_int.is_cuda:
            return self.graph_cache("log_prob", self._log_prob)(x_int, x_real).clone()
        return self._log_prob(x_int, x_real)

    def _log_prob(self, x_int, x_real) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.node_values(x_int, x_real, reuse=True)[self.executor.out_row].clone()
        return CircuitLogLikelihood.apply(
            self.sum_log_weights(padded=True), self.executor, *self.input_blocks(x_int, x_real)
        )

    # -- queries (implemented in pccompile.runtime.queries) -------------------------------------------
    def conditional(self, x, query) -> torch.Tensor:
        """log p(x[query] | the observed non-query entries of x); query: bool [V] or [B, V]."""
        from . import queries

        return queries.conditional(self, x, query)

    def mpe(self, x, missing=None) -> torch.Tensor:
        """Observed entries kept, missing ones (-1 / NaN / mask) filled with the most probable
        completion (max-product decoding: exact on deterministic circuits)."""
        from . import queries

        return queries.mpe(self, x, missing)

    def sample(self, n: int | None = None, evidence=None, seed: int | None = None) -> torch.Tensor:
        """n unconditional samples [n, V], or completions of `evidence` rows (missing entries drawn)."""
        from . import queries

        return queries.sample(self, n, evidence, seed)

    # -- export -----------------------------------------------------------------------------
    def to_circuit(self) -> Circuit:
        """The IR circuit with this module's current parameters."""
        with torch.no_grad():
            logw = self.sum_log_weights().double().cpu().numpy()
            inputs = [{k: v.detach().double().cpu().numpy() for k, v in h.named_parameters()} for h in self.inputs]
        params = circuit_params_from_runtime(self.circuit, self.program, logw, inputs)
        return self.circuit.with_params(params)

    def extra_repr(self) -> str:
        s = self.circuit.stats()
        return (
            f"vars={s['variables']}, nodes={s['nodes']}, sum_edges={s['sum edges']}, "
            f"params={s['parameters']}, layers={len(self.program.layers)}, backend={self.backend!r}"
        )
