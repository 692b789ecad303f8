"""A Program's partitions as torch buffers, in Program order: what the torch executor runs and
what the top-down decoder (sampling, MPE) reads on either backend."""

from __future__ import annotations

import numpy as np
import torch
from pccompile.ir import FIRST_ROW, ONE_ROW, ZERO_ROW, Program
from torch import nn


class ProgramTensors(nn.Module):
    """Index arrays as non-persistent buffers (so `.to(device)` moves them); `part(key)` gives a
    partition's (rows, child rows, weight ids or None for products)."""

    def __init__(self, program: Program):
        super().__init__()
        self.num_rows = program.num_rows
        self.root_row = program.root_row
        self.num_inputs = sum(p.size for p in program.input_partitions)
        self.num_params = program.num_sum_params
        for k, part in enumerate(program.input_partitions):
            self.register_buffer(f"in{k}_vars", torch.as_tensor(part.vars), persistent=False)
        self.layer_specs: list[tuple[str, list[str]]] = []
        self.spans: dict[str, tuple[int, int] | None] = {}
        for li, layer in enumerate(program.layers[1:], start=1):
            names = []
            for pi, part in enumerate(layer.partitions):
                key = f"l{li}p{pi}"
                flat = part.rows.reshape(-1)
                contiguous = flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size))
                self.spans[key] = (int(flat[0]), int(flat[0]) + flat.size) if contiguous else None
                self.register_buffer(key + "_rows", torch.as_tensor(part.rows.reshape(-1)), persistent=False)
                self.register_buffer(key + "_child", torch.as_tensor(part.child_rows), persistent=False)
                if layer.kind == "sum" and part.dense:
                    self.register_buffer(key + "_pstart", torch.as_tensor(part.param_start), persistent=False)
                    self.register_buffer(key + "_fanin", torch.as_tensor(part.fanin), persistent=False)
                elif layer.kind == "sum":
                    self.register_buffer(key + "_pid", torch.as_tensor(part.param_ids), persistent=False)
                names.append(key)
            self.layer_specs.append((layer.kind, names))

    def read(self, buf: torch.Tensor, key: str) -> torch.Tensor:
        """A partition's rows of `buf`: a view of the slice when they are one contiguous range
        (the usual case), otherwise gathered."""
        span = self.spans[key]
        return buf[getattr(self, key + "_rows")] if span is None else buf[span[0] : span[1]]

    def write(self, buf: torch.Tensor, key: str, values: torch.Tensor) -> None:
        """Store [rows, B] values into a partition's rows of `buf`."""
        span = self.spans[key]
        if span is None:
            buf[getattr(self, key + "_rows")] = values
        else:
            buf[span[0] : span[1]] = values

    def input_vars(self, k: int) -> torch.Tensor:
        """[m] the variable of each row of input partition k."""
        return getattr(self, f"in{k}_vars")

    def part(self, key: str):
        """(rows, child rows, parameter ids or None for products) of one partition."""
        rows, child = getattr(self, key + "_rows"), getattr(self, key + "_child")
        if hasattr(self, key + "_pid"):
            return rows, child, getattr(self, key + "_pid")
        if not hasattr(self, key + "_pstart"):
            return rows, child, None
        start, fan = getattr(self, key + "_pstart"), getattr(self, key + "_fanin")
        G = rows.shape[0] // start.shape[0]
        k = torch.arange(child.shape[1], device=rows.device)
        ids = start[:, None, None] + torch.arange(G, device=rows.device)[None, :, None] * fan[:, None, None] + k
        return rows, child, torch.where(k < fan[:, None, None], ids, self.num_params)

    def start_mars(self, input_logp: torch.Tensor) -> torch.Tensor:
        """A fresh [num_rows, B] buffer with the padding rows and the input rows filled in."""
        mars = torch.empty(self.num_rows, input_logp.shape[1], dtype=input_logp.dtype, device=input_logp.device)
        mars[ZERO_ROW] = float("-inf")
        mars[ONE_ROW] = 0.0
        mars[FIRST_ROW : FIRST_ROW + self.num_inputs] = input_logp
        return mars

    @staticmethod
    def product(mars: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
        """[m, B] sums of each row's F child rows (log space), one child column at a time: no
        [m, F, B] temporary."""
        out = mars[child[:, 0]]
        for f in range(1, child.shape[1]):
            out += mars[child[:, f]]
        return out

    def extend_logw(self, logw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """log-weights plus the padding slot (index P, weight 0); already there when the runtime
        passes them padded ([P + 1], see CompiledCircuit.sum_log_weights)."""
        if logw.shape[0] == self.num_params + 1:
            return logw.to(dtype).contiguous()
        return torch.cat([logw.to(dtype), logw.new_full((1,), float("-inf"), dtype=dtype)]).contiguous()
