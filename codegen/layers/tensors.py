"""A Program's partitions as torch buffers: what the torch executor runs, and (in Program order,
unfused) what the top-down decoder (sampling, MPE) reads on every backend."""

from __future__ import annotations

import numpy as np
import torch
from pccompile.ir import FIRST_ROW, ONE_ROW, ZERO_ROW, Program
from torch import nn

from ..fusion import FusionPlan, kept_rows, outer_split, used_columns
from .children import ChildFactors, ChildOuter, ChildRows, sum_rows


class ProgramTensors(nn.Module):
    """Index arrays as non-persistent buffers (so `.to(device)` moves them); `part(key)` gives a
    partition's (rows, child rows, weight ids or None for products) and `sources[key]` how a
    sum partition reads its children (layers.children).

    With a fusion plan (codegen.fusion) the skipped product layers are gone: their rows are not
    in the buffer (`num_rows` counts the rest, renumbered in order), and the sums after them
    form their children from the factors. Without one, rows are in Program order."""

    def __init__(self, program: Program, fusion: FusionPlan | None = None):
        super().__init__()
        skip = fusion.skip if fusion is not None else set()
        perm = kept_rows(program, skip)
        self.fused = bool(skip)
        self.num_rows = int((perm >= 0).sum())
        self.root_row = int(perm[program.root_row])
        self.num_inputs = sum(p.size for p in program.input_partitions)
        self.num_params = program.num_sum_params
        for k, part in enumerate(program.input_partitions):
            self.register_buffer(f"in{k}_vars", torch.as_tensor(part.vars), persistent=False)
        self.layer_specs: list[tuple[str, list[str]]] = []
        self.spans: dict[str, tuple[int, int] | None] = {}
        self.sources = nn.ModuleDict()
        self.widths: dict[str, int] = {}  # K of each dense sum partition
        self.weight_blocks: dict[str, list[int] | None] = {}  # block starts of dense partitions
        for li, layer in enumerate(program.layers[1:], start=1):
            if li in skip:
                continue
            names = []
            for pi, part in enumerate(layer.partitions):
                key = f"l{li}p{pi}"
                flat = perm[part.rows.reshape(-1)]
                contiguous = flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size))
                self.spans[key] = (int(flat[0]), int(flat[0]) + flat.size) if contiguous else None
                self.register_buffer(key + "_rows", torch.as_tensor(flat), persistent=False)
                if layer.kind == "sum":
                    comp = fusion.children.get((li, pi)) if li - 1 in skip else None
                    self.sources[key] = _children(perm, part.child_rows, comp)
                else:
                    self.register_buffer(key + "_child", torch.as_tensor(perm[part.child_rows]), persistent=False)
                if layer.kind == "sum" and part.dense:
                    self.weight_blocks[key] = _weight_blocks(part)
                    self.register_buffer(key + "_pstart", torch.as_tensor(part.param_start), persistent=False)
                    self.register_buffer(key + "_fanin", torch.as_tensor(part.fanin), persistent=False)
                    self.widths[key] = int(part.child_rows.shape[1])
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
        """(rows, child rows, parameter ids or None for products) of one partition; a fused sum
        partition has no child rows (None): read it through `sources[key]`."""
        rows = getattr(self, key + "_rows")
        if key not in self.sources:
            return rows, getattr(self, key + "_child"), None
        source = self.sources[key]
        child = source.child if isinstance(source, ChildRows) else None
        return rows, child, self.param_ids(key)

    def param_ids(self, key: str) -> torch.Tensor:
        """[g, G, K] weight ids of a sum partition (the padding slot num_params off the fan-in)."""
        if hasattr(self, key + "_pid"):
            return getattr(self, key + "_pid")
        rows, start, fan = getattr(self, key + "_rows"), getattr(self, key + "_pstart"), getattr(self, key + "_fanin")
        G = rows.shape[0] // start.shape[0]
        k = torch.arange(self.widths[key], device=rows.device)
        ids = start[:, None, None] + torch.arange(G, device=rows.device)[None, :, None] * fan[:, None, None] + k
        return torch.where(k < fan[:, None, None], ids, self.num_params)

    def log_weights(self, key: str, logw_ext: torch.Tensor) -> torch.Tensor:
        """[g, G, K] log-weights of a sum partition. Dense groups without padding are row-major
        [G, K] blocks of the flat vector: a view when the blocks are consecutive (the usual
        case), else one copy of the blocks; other partitions gather by weight id."""
        starts = self.weight_blocks.get(key)
        if starts is None:
            return logw_ext[self.param_ids(key)]
        g, G, K = self.sum_shape(key)
        if len(starts) == 1:
            return logw_ext[starts[0] : starts[0] + g * G * K].view(g, G, K)
        return torch.cat([logw_ext[a : a + G * K] for a in starts]).view(g, G, K)

    def add_weight_flows(self, key: str, grad_logw: torch.Tensor, vals: torch.Tensor) -> None:
        """grad_logw[ids of the partition] += vals [g, G, K]."""
        starts = self.weight_blocks.get(key)
        if starts is None:
            grad_logw.index_add_(0, self.param_ids(key).reshape(-1), vals.reshape(-1))
            return
        flat = vals.reshape(len(starts), -1)
        for a, v in zip(starts, flat):
            grad_logw[a : a + v.shape[0]] += v

    def group_starts(self, key: str) -> torch.Tensor | None:
        """[g] each group's first weight id, for a dense sum partition whose groups all have their
        K children (each group's weights one row-major [G, K] block of the flat vector, the
        blocks consecutive or not); None for padded and masked partitions."""
        if key not in self.widths:
            return None
        full = bool((getattr(self, key + "_fanin") == self.widths[key]).all())
        return getattr(self, key + "_pstart") if full else None

    def sum_shape(self, key: str) -> tuple[int, int, int]:
        """(g, G, K) of a sum partition: groups, nodes per group, children per group."""
        g = getattr(self, key + "_pstart").shape[0]
        return g, getattr(self, key + "_rows").shape[0] // g, self.widths[key]

    def empty_mars(self, B: int, dtype: torch.dtype, device) -> torch.Tensor:
        """A fresh [num_rows, B] buffer with only the padding rows filled in."""
        return self.reset_padding(torch.empty(self.num_rows, B, dtype=dtype, device=device))

    @staticmethod
    def reset_padding(mars: torch.Tensor) -> torch.Tensor:
        """Write the padding rows (log 0 and log 1) of a value buffer."""
        mars[ZERO_ROW] = float("-inf")
        mars[ONE_ROW] = 0.0
        return mars

    def start_mars(self, input_logp: torch.Tensor) -> torch.Tensor:
        """A fresh [num_rows, B] buffer with the padding rows and the input rows filled in."""
        mars = self.empty_mars(input_logp.shape[1], input_logp.dtype, input_logp.device)
        mars[FIRST_ROW : FIRST_ROW + self.num_inputs] = input_logp
        return mars

    @staticmethod
    def product(mars: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
        """[m, B] sums of each row's F child rows (log space), one child column at a time: no
        [m, F, B] temporary."""
        return sum_rows(mars, child)

    def extend_logw(self, logw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """log-weights plus the padding slot (index P, weight 0); already there when the runtime
        passes them padded ([P + 1], see CompiledCircuit.sum_log_weights)."""
        if logw.shape[0] == self.num_params + 1:
            return logw.to(dtype).contiguous()
        return torch.cat([logw.to(dtype), logw.new_full((1,), float("-inf"), dtype=dtype)]).contiguous()


def _children(perm: np.ndarray, child_rows: np.ndarray, comp) -> nn.Module:
    """The rule for a sum partition's children: its child rows, or (fused) the factors of the
    products it absorbed, as an outer product of two vectors where they are one."""
    if comp is None:
        return ChildRows(perm[child_rows])
    comp = used_columns(comp)
    split = outer_split(comp)
    if split is not None:
        return ChildOuter(perm[split[0]], perm[split[1]])
    return ChildFactors(perm[comp])


def _weight_blocks(part, max_blocks: int = 256) -> list[int] | None:
    """Where a dense partition's weights lie when every group is one row-major [G, K] block
    (no padding): [start] if the g blocks are consecutive, else each block's start (None when
    padded, or too many blocks to copy one by one)."""
    g, G = part.rows.shape
    K = part.child_rows.shape[1]
    start, fan = np.asarray(part.param_start), np.asarray(part.fanin)
    if not np.all(fan == K):
        return None
    if np.array_equal(start, start[0] + np.arange(g) * G * K):
        return [int(start[0])]
    return [int(a) for a in start] if g <= max_blocks else None
