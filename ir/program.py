"""The lowered, layered Program: plain numpy index arrays, the only thing a backend reads.

Buffer convention: a backend keeps log-values in `node_mars [num_rows, batch]`. Row ZERO_ROW
holds log 0 (-inf) and pads sum fan-in; row ONE_ROW holds log 1 (0) and pads product fan-in.
Sum weights live in one flat vector of `num_sum_params` entries; index `num_sum_params` is a
virtual padding slot whose log-weight is -inf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .families import make_distribution

ZERO_ROW = 0
ONE_ROW = 1
FIRST_ROW = 2


@dataclass(frozen=True, eq=False)
class InputPartition:
    """Input nodes of one family (and category count): buffer rows `start..start+len(vars)`."""

    dist: str
    num_cats: int | None
    start: int
    vars: np.ndarray  # [m] variable of each row

    @property
    def size(self) -> int:
        return int(self.vars.shape[0])

    @cached_property
    def run_length(self) -> int | None:
        """L when the rows come in runs of L per variable (var0 x L, var1 x L, ...; one node
        vector per variable, as in an HCLT), else None. Lets per-variable work be one batched
        product (the EM statistics in pccompile.analysis.flows)."""
        n = self.size
        if n == 0:
            return None
        v = self.vars
        L = int(np.argmax(v != v[0])) or n
        if n % L or not np.all(v.reshape(-1, L) == v[::L, None]):
            return None
        return L


@dataclass(frozen=True, eq=False)
class ProductPartition:
    """Row rows[i] = sum over f of node_mars[child_rows[i, f]] (log space); padded with ONE_ROW."""

    rows: np.ndarray  # [m]
    child_rows: np.ndarray  # [m, F]
    real_edges: int


@dataclass(frozen=True, eq=False)
class SumPartition:
    """Groups of G nodes sharing K child rows: rows [g, G], child_rows [g, K] (pad ZERO_ROW).

    Weights are addressed in one of two ways. Dense groups (`param_start`, `fanin` [g]): node i of
    group g uses ids start + i * fanin + k for k < fanin (its row of a row-major block), so no
    per-weight index is stored. Otherwise `param_ids` [g, G, K] lists every id. Padding and
    missing edges use id `num_sum_params`, whose weight is 0."""

    rows: np.ndarray
    child_rows: np.ndarray
    real_edges: int
    param_ids: np.ndarray | None = None
    param_start: np.ndarray | None = None
    fanin: np.ndarray | None = None

    @property
    def dense(self) -> bool:
        return self.param_ids is None

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self.rows.shape[0]), int(self.rows.shape[1]), int(self.child_rows.shape[1])

    def param_id_table(self, num_params: int) -> np.ndarray:
        """[g, G, K] ids, materialised (dense partitions compute them from start and fan-in)."""
        if self.param_ids is not None:
            return self.param_ids
        assert self.fanin is not None and self.param_start is not None  # a dense partition
        _, G, K = self.shape
        k = np.arange(K)[None, None, :]
        fan = self.fanin[:, None, None]
        ids = self.param_start[:, None, None] + np.arange(G)[None, :, None] * fan + k
        return np.where(k < fan, ids, num_params)


@dataclass(frozen=True)
class Layer:
    kind: str  # "input" | "product" | "sum"
    partitions: tuple


@dataclass(frozen=True, eq=False)
class SumParamLayout:
    """Where a (non-tied) IR sum node's weights sit in the flat vector: its (masked) entries in
    row-major order from `offset`."""

    node: int
    offset: int
    size: int
    width: int
    mask: np.ndarray | None


@dataclass(frozen=True)
class InputParamLayout:
    node: int
    partition: int  # index into Program.input_partitions
    start: int  # first row inside the partition
    size: int


@dataclass(frozen=True, eq=False)
class Program:
    num_rows: int
    root_row: int
    var_cats: np.ndarray  # [V] categories per variable, 0 for real variables, -1 for counts
    var_names: tuple[str, ...]
    layers: tuple[Layer, ...]
    num_sum_params: int
    # Normalisation rows of the flat weights: dense nodes come first, as blocks (start, stop, width)
    # of rows of equal width; the masked nodes follow from `tail_start`, each weight tagged with its
    # row (`tail_segment`, 0..tail_rows-1).
    dense_blocks: tuple[tuple[int, int, int], ...]
    tail_start: int
    tail_segment: np.ndarray
    tail_rows: int
    sum_layout: tuple[SumParamLayout, ...]
    input_layout: tuple[InputParamLayout, ...]
    node_rows: dict = field(default_factory=dict)  # IR node id -> (first row, size)

    @property
    def input_partitions(self) -> tuple[InputPartition, ...]:
        return self.layers[0].partitions if self.layers and self.layers[0].kind == "input" else ()

    @property
    def num_vars(self) -> int:
        return int(self.var_cats.shape[0])

    def __str__(self) -> str:
        return format_program(self)


def _pad_pct(padded: int, real: int) -> str:
    return f"{100.0 * (padded - real) / max(real, 1):.0f}%"


def format_program(p: Program) -> str:
    lines = [
        f"program: {p.num_rows} rows, {p.num_vars} variables, {len(p.layers)} layers, "
        f"{p.num_sum_params} sum weights, root row {p.root_row}"
    ]
    for li, layer in enumerate(p.layers):
        if layer.kind == "input":
            for part in layer.partitions:
                kind = make_distribution(part.dist, part.num_cats).describe()
                lines.append(
                    f"  layer {li:3d} input   {kind}: rows {part.start}..{part.start + part.size - 1}"
                    f" ({part.size} nodes)"
                )
        elif layer.kind == "product":
            parts = ", ".join(
                f"{q.rows.shape[0]}x{q.child_rows.shape[1]} (pad {_pad_pct(q.child_rows.size, q.real_edges)})"
                for q in layer.partitions
            )
            lines.append(f"  layer {li:3d} product {len(layer.partitions)} partition(s): nodes x fan-in {parts}")
        else:
            parts = ", ".join(
                f"{g}x{gs}x{k}{' dense' if q.dense else ''} (pad {_pad_pct(g * gs * k, q.real_edges)})"
                for q in layer.partitions
                for g, gs, k in [q.shape]
            )
            lines.append(
                f"  layer {li:3d} sum     {len(layer.partitions)} partition(s): groups x nodes x fan-in {parts}"
            )
    return "\n".join(lines)
