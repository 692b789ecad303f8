"""The CPU target's Executor: the torch backend's buffers, partitions and fusion plan, with every
product and sum partition run by the C kernels (kernels/*.c) instead of torch ops.

It reads the same ProgramTensors as the torch backend (so the fusion plan, the row numbering,
the weight layout and the decoder are shared, not copied) and replaces what costs: the layers of
a forward pass and of a backward pass, the lookup of table families' input rows, and the
categorical M-step (codegen.cpu.inputs). The tables themselves (a log-softmax), the EM
statistics, max-product passes and everything the runtime does around them stay the torch
backend's.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np
import torch
from pccompile.ir import ONE_ROW, Program

from ..layers import ProgramTensors
from ..layers.children import ChildFactors, ChildOuter
from ..torch_backend.executor import TorchExecutor, _tiny
from .build import load_library
from .first_touch import FirstTouch, first_touch
from .inputs import cpu_counts, cpu_m_step, log_table, lookup_rows, run_codes, table_block
from .sparse import SparseBlocks, sparse_blocks
from .weights import WeightLayout, partition_weights, weight_layout


@dataclass(frozen=True)
class SumLaunch:
    """A sum partition's arrays as the kernels read them (contiguous int64): factor rows comp
    [g, K, F] and their counts nf [g, K] (factor_counts), and the nodes' rows [g * G]. For an
    outer product (ChildOuter) comp and nf are its first vector's and comp_b, nf_b [g, Kb, Fb]
    its second's, child i * Kb + j reading both; for plain children they are empty (Kb = 0)."""

    comp: torch.Tensor
    nf: torch.Tensor
    rows: torch.Tensor
    comp_b: torch.Tensor
    nf_b: torch.Tensor

    @property
    def groups(self) -> int:
        return self.comp.shape[0]

    @property
    def group_size(self) -> int:
        return self.rows.shape[0] // self.groups

    @property
    def outer(self) -> bool:
        return self.comp_b.shape[1] > 0

    def child_args(self) -> tuple[int, ...]:
        """The kernels' children arguments: K, F, comp, nf, Kb, Fb, comp_b, nf_b."""
        K, F = self.comp.shape[1:]
        Kb, Fb = self.comp_b.shape[1:]
        return (K, F, self.comp.data_ptr(), self.nf.data_ptr(), Kb, Fb, self.comp_b.data_ptr(), self.nf_b.data_ptr())


def launch_arrays(pt: ProgramTensors) -> dict[str, tuple[torch.Tensor, torch.Tensor] | SumLaunch]:
    """Per partition of one ProgramTensors, what the kernels read: a product's child rows [m, F]
    and rows [m]; a sum's SumLaunch."""
    arrays: dict[str, tuple[torch.Tensor, torch.Tensor] | SumLaunch] = {}
    for kind, keys in pt.layer_specs:
        for key in keys:
            rows = getattr(pt, key + "_rows").reshape(-1).contiguous()
            if kind == "product":
                arrays[key] = (pt.part(key)[1].contiguous(), rows)
                continue
            source = pt.sources[key]
            if isinstance(source, ChildOuter):
                comp, nf = factor_counts(source.a_rows.numpy())
                comp_b, nf_b = factor_counts(source.b_rows.numpy())
            elif isinstance(source, ChildFactors):
                comp, nf = factor_counts(source.comp.numpy())
                comp_b, nf_b = (
                    torch.zeros(comp.shape[0], 0, 1, dtype=torch.int64),
                    torch.zeros(comp.shape[0], 0, dtype=torch.int64),
                )
            else:  # pragma: no cover - every rule is one of the two
                raise TypeError(f"no CPU kernel reads children of kind {type(source).__name__}")
            arrays[key] = SumLaunch(comp, nf, rows, comp_b, nf_b)
    return arrays


SPARSE_DENSITY = 0.5  # the default: masked partitions at most half live run as sparse blocks


def sparse_partitions(pt: ProgramTensors, max_density: float) -> dict[str, SparseBlocks]:
    """The masked sum partitions of one ProgramTensors at most `max_density` live, as sparse
    blocks (codegen.cpu.sparse); dense and outer-product partitions have no padding to skip."""
    found = {}
    for kind, keys in pt.layer_specs:
        for key in keys:
            if kind != "sum" or key in pt.weight_blocks or isinstance(pt.sources[key], ChildOuter):
                continue
            blocks = sparse_blocks(pt.param_ids(key).numpy(), pt.num_params)
            if blocks.density <= max_density:
                found[key] = blocks
    return found


def factor_counts(comp: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """[g, K, F] factor rows -> (the same with each child's real factors first, [g, K] how many):
    ONE_ROW padding (log 1) adds nothing, and a partition padded to its widest product (an
    MNIST tree's hub pixel has 137 children) would otherwise read it for every child. A child
    of no real factor keeps one ONE_ROW (its value, log 1)."""
    pad = comp == ONE_ROW
    order = np.argsort(pad, axis=2, kind="stable")
    packed = np.take_along_axis(comp, order, axis=2)
    counts = np.maximum((~pad).sum(2), 1)
    return torch.as_tensor(np.ascontiguousarray(packed)), torch.as_tensor(counts.astype(np.int64))


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _block_ptrs(blocks: SparseBlocks) -> tuple[int, ...]:
    """The sparse kernels' block arrays, in their argument order."""
    return tuple(
        _ptr(t) for t in (blocks.group_start, blocks.rows, blocks.count, blocks.col_start, blocks.cols, blocks.w_start)
    )


def _threads() -> int:
    """The kernels' OpenMP threads: as many as torch's own."""
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system: the torch
    ops around the kernels (input log-probabilities, the M-step) allocate and free tensors of
    tens of MB each step, and on this kind of machine the page faults of touching fresh memory
    again cost more than the arithmetic (an MNIST HCLT's input layer: 64 ms against 26 ms).
    Returns whether the setting took (False where the C library is not glibc, or where the
    process was started with glibc's own MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_,
    which are left as the user set them)."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))


class CpuExecutor(TorchExecutor):
    """Executor (codegen.executor) whose layers run as the CPU target's kernels: float32 buffers
    on the CPU; anything else (another dtype or device) takes the torch backend's path.

    sparse_density: masked sum partitions with at most this fraction of their padded edges
    live run as sparse blocks, each node's live edges only (0 turns that off). Above it the
    dense kernel's register blocking does the padded work faster than the sparse one skips it
    (bench/cpu_step.py --grown)."""

    def __init__(self, program: Program, fuse: bool = True, sparse_density: float = SPARSE_DENSITY):
        super().__init__(program, fuse)
        self.lib = load_library()
        keep_freed_memory()
        distinct = {id(pt): pt for pt in (self.tensors, self.fused)}  # one object when nothing is fused
        self._arrays = {key: launch_arrays(pt) for key, pt in distinct.items()}
        self._sparse = {key: sparse_partitions(pt, sparse_density) for key, pt in distinct.items()}
        self._layouts: dict[int, WeightLayout] = {
            key: weight_layout(pt, self._sparse[key]) for key, pt in distinct.items()
        }
        self._first: FirstTouch = first_touch(self.fused, self._arrays[id(self.fused)], self.out_row)
        self._dense_blocks = torch.tensor(program.dense_blocks, dtype=torch.int64).reshape(-1, 3)

    def _weights(self, pt: ProgramTensors, key: str, logw_ext: torch.Tensor):
        return partition_weights(self._layouts[id(pt)], pt, key, logw_ext)

    def _input_rows(self, k: int, part, params: dict, x_int, x_real, out: torch.Tensor) -> None:
        """Families over K values: the table of log-probabilities (inputs.log_table: torch's, or
        the logits an M-step kernel left normalised), its lookup at the batch's codes in the
        kernel (no padded table copy, no [m, B] index; rows in runs per variable read one row of
        codes per run); others as the torch backend."""
        table = None
        if self._runs_here(out) and x_int.device.type == "cpu":
            table = log_table(part, params)
        if table is None or table.dtype != torch.float32:
            return super()._input_rows(k, part, params, x_int, x_real, out)
        lookup_rows(self.lib, part, table.contiguous(), run_codes(self.lib, part, x_int), out)

    def input_block(self, part, params: dict, vars_t, x_int, x_real) -> torch.Tensor:
        """Table families' rows and gradients in the kernels (TableLookup); others as the
        torch backend."""
        block = table_block(self.lib, part, params, x_int)
        return super().input_block(part, params, vars_t, x_int, x_real) if block is None else block

    def input_stats(self, part, vars_t, flows: torch.Tensor, x_int, x_real, deferred: bool = False):
        """A family with a counting kernel (codegen.cpu.inputs) counts there (`deferred`: later,
        in the categorical M-step's pass, or when read); others: None."""
        kernel = cpu_counts(part.dist)
        return None if kernel is None else kernel(self.lib, part, vars_t, flows, x_int, deferred)

    def em_dense_blocks(self, logits, logw, flows, step, pseudocount: float) -> bool:
        """The dense blocks' M-step in the kernel (pc_sum_m_step), in place on the logits; the
        runtime updates the masked rows. Other dtypes or devices: False (the runtime does all)."""
        if not all(self._runs_here(t) for t in (logits, logw, flows)) or not self._dense_blocks.numel():
            return False
        step = float(step)  # a scalar tensor on the CPU costs no wait
        self.lib.pc_sum_m_step(
            _ptr(logits), _ptr(logw), _ptr(flows), _ptr(self._dense_blocks), self._dense_blocks.shape[0], step,
            float(pseudocount), _threads(),
        )  # fmt: skip
        return True

    def em_inputs(self, part, h, stats, step, pseudocount: float) -> bool:
        """A family with an M-step kernel (codegen.cpu.inputs) runs it in place; others: False."""
        kernel = cpu_m_step(part.dist)
        return kernel is not None and kernel(self.lib, part, h, stats, float(step), float(pseudocount))

    @staticmethod
    def _runs_here(mars: torch.Tensor) -> bool:
        return mars.device.type == "cpu" and mars.dtype == torch.float32 and mars.is_contiguous()

    def _product_layer(self, pt: ProgramTensors, key: str, mars: torch.Tensor) -> None:
        if not self._runs_here(mars):
            return super()._product_layer(pt, key, mars)
        a, rows = self._arrays[id(pt)][key]
        self.lib.pc_product_forward(_ptr(mars), mars.shape[1], a.shape[0], a.shape[1], _ptr(a), _ptr(rows), _threads())

    def _sum_layer(self, pt: ProgramTensors, key: str, mars: torch.Tensor, logw_ext: torch.Tensor) -> None:
        if not self._runs_here(mars):
            return super()._sum_layer(pt, key, mars, logw_ext)
        sl = self._arrays[id(pt)][key]
        blocks = self._sparse[id(pt)].get(key)
        pw = self._weights(pt, key, logw_ext)
        if blocks is not None:
            w = pw.lw.exp()  # held until the kernel returns
            self.lib.pc_sparse_forward(
                _ptr(mars), mars.shape[1], sl.groups, sl.group_size, *sl.child_args()[:4], _ptr(sl.rows),
                *_block_ptrs(blocks), _ptr(w), _ptr(pw.lw), _tiny(torch.float32), _threads(),
            )  # fmt: skip
            return
        self.lib.pc_sum_forward(
            _ptr(mars), mars.shape[1], sl.groups, sl.group_size, *sl.child_args(), _ptr(sl.rows), *pw.group_args(),
            _tiny(torch.float32), _threads(),
        )  # fmt: skip

    def _new_flows(self, mars: torch.Tensor, reuse: bool) -> torch.Tensor:
        """Where the kernels run the backward, a buffer left unzeroed: each row's first flow is
        stored (first_touch), and only the rows no partition writes are zeroed (NaN everywhere
        first when poisoned, so that a row read before it is written shows)."""
        if not self._kernel_backward(mars):
            return super()._new_flows(mars, reuse)
        if reuse:
            flows = self._workspace("flows", mars.shape[0], mars.shape[1], mars.dtype, mars.device)
        else:
            flows = torch.empty_like(mars)
        if self.poison:
            flows.fill_(float("nan"))
        return flows.index_fill_(0, self._first.untouched, 0.0)

    def _kernel_backward(self, mars: torch.Tensor) -> bool:
        """Whether the kernels run every partition of a backward over this value buffer (its
        flows and weight flows take mars's dtype, device and layout)."""
        return self._runs_here(mars)

    def _product_backward(self, pt: ProgramTensors, key: str, flows: torch.Tensor) -> None:
        if not self._runs_here(flows):
            return super()._product_backward(pt, key, flows)
        a, rows = self._arrays[id(pt)][key]
        (first,) = self._first.flags[key]
        self.lib.pc_product_backward(
            _ptr(flows), flows.shape[1], a.shape[0], a.shape[1], _ptr(a), _ptr(rows), _ptr(first), _threads()
        )

    def _sum_backward(self, pt: ProgramTensors, key: str, mars, flows, grad_logw, logw_ext) -> None:
        """The kernel's backward, except for buffers the kernels do not read, which take the
        torch backend's."""
        if not (self._runs_here(mars) and self._runs_here(flows) and self._runs_here(grad_logw)):
            return super()._sum_backward(pt, key, mars, flows, grad_logw, logw_ext)
        sl = self._arrays[id(pt)][key]
        blocks = self._sparse[id(pt)].get(key)
        pw = self._weights(pt, key, logw_ext)
        pad = self._layouts[id(pt)].pad
        first, first_b = (_ptr(t) for t in self._first.flags[key])
        if blocks is not None:
            ids, _, unique, grad = pw.flow_args(pad, grad_logw)
            lw, w = pw.lw, pw.lw.exp()  # held until the kernel returns
            self.lib.pc_sparse_backward(
                _ptr(mars), _ptr(flows), mars.shape[1], sl.groups, sl.group_size, *sl.child_args()[:4], _ptr(sl.rows),
                *_block_ptrs(blocks), _ptr(w), _ptr(lw), lw.shape[0], blocks.group_edges, _tiny(torch.float32),
                first, ids, 0, pad, unique, grad, _threads(),
            )  # fmt: skip
        else:
            self.lib.pc_sum_backward(
                _ptr(mars), _ptr(flows), mars.shape[1], sl.groups, sl.group_size, *sl.child_args(), _ptr(sl.rows),
                *pw.group_args(), _tiny(torch.float32), first, first_b, *pw.flow_args(pad, grad_logw), _threads(),
            )  # fmt: skip
