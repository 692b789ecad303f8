"""Program -> Triton module source: the kernels it needs plus emitted launchers.

The launchers (`forward`, `forward_max`, `backward`) are straight-line code with one launch per
partition, its grid and its constexprs written out, so `pcc emit` shows exactly what runs. Index
arrays are returned alongside; launchers refer to them as idx[k].

Fusion: a product layer whose rows are read only by the sum layer right after it is folded into
that layer's sum kernels (they read the products' factors, `child [g, K, F]`) and not launched
at all, unless a caller asks for every row (`complete=True`, used by sampling and MPE decoding).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field

import numpy as np
from pccompile.ir import Program
from pccompile.ir.families import triton_code

from ..fusion import FusionPlan, plan_fusion
from .kernels import HEADER, TEMPLATES


@dataclass(frozen=True)
class TritonOptions:
    block_b: int = 64  # batch tile
    max_block_g: int = 64
    max_block_k: int = 32
    block_m: int = 32  # product rows per program
    use_dot: bool = True  # tl.dot on the matrix units where tiles allow (>= 16)
    precision: str = "tf32"  # tl.dot operands: tf32 | bf16 | ieee (exact fp32); accumulation is fp32

    def __post_init__(self):
        if self.precision not in ("tf32", "bf16", "ieee"):
            from pccompile.ir import ArgumentError

            raise ArgumentError(f"unknown precision '{self.precision}'; expected tf32, bf16 or ieee")

    fuse: bool = True
    num_warps: int = 0  # per sum launch; 0: 8 for tiles of >= 2048 entries (4 spills there on sm_90), else 4
    combined_backward_tile: int = 1024  # node x child tiles up to this size get one backward launch, not two


class IndentedBuffer:
    def __init__(self):
        self.lines: list[str] = []
        self.level = 0

    def line(self, text: str = "") -> None:
        self.lines.append("    " * self.level + text if text else "")

    def indent(self):
        buf = self

        class _Ctx:
            def __enter__(self):
                buf.level += 1

            def __exit__(self, *exc):
                buf.level -= 1

        return _Ctx()

    @contextlib.contextmanager
    def function(self, signature: str, doc: str):
        """A top-level function: two blank lines, `def signature:`, its docstring, then the body
        written inside the `with` block, indented."""
        self.line("")
        self.line("")
        self.line(f"def {signature}:")
        with self.indent():
            self.line(f'"""{doc}"""')
            yield

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Launch:
    kind: str  # "prod" | "sum"
    layer: int
    idx: tuple[int, ...]  # positions in the index list
    meta: dict = field(default_factory=dict)


@dataclass
class Emitted:
    """The module source plus what the executor needs to run it. Buffer rows are renumbered:
    rows of products that fusion skips go last, so a normal pass allocates only
    `num_rows` (the Program's other rows, then one row per sum group for its saved max), and a
    `complete` pass (sampling, MPE) `num_rows_complete`. `perm[r]` is Program row r's new row."""

    source: str
    index_arrays: list[np.ndarray]
    launches: list[Launch]
    digest: str
    num_rows: int
    num_rows_complete: int
    perm: np.ndarray


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _sum_tiles(G: int, K: int, opt: TritonOptions) -> tuple[int, int, bool, int]:
    """(BLOCK_G, BLOCK_K, use tl.dot, warps) of a sum partition with groups of G nodes over K
    children: matrix-unit tiles of at least 16 where they fit, else a multiply-reduce whose
    [BLOCK_G, BLOCK_K, BLOCK_B] temporary stays in registers."""
    bg = min(_pow2(G), opt.max_block_g)
    use_dot = opt.use_dot and bg >= 16 and opt.block_b >= 16
    bk = min(_pow2(K), opt.max_block_k)
    if use_dot:
        bk = max(bk, 16)
    else:
        bk = min(bk, max(1, 2048 // (bg * opt.block_b)))
    warps = opt.num_warps or (8 if bg * opt.block_b >= 2048 else 4)
    return bg, bk, use_dot, warps


def plan_launches(
    program: Program, opt: TritonOptions, fusion: FusionPlan, perm: np.ndarray, first_max_row: int, add
) -> tuple[list[Launch], int]:
    """One Launch per product and sum partition, in Program order, with its index arrays
    (registered through `add`, renumbered by `perm`) and constexprs. Each sum group gets a row for
    its saved max, from `first_max_row` on; returns the launches and the first row after them."""
    launches: list[Launch] = []
    max_row = first_max_row
    for li, layer in enumerate(program.layers[1:], start=1):
        for pi, part in enumerate(layer.partitions):
            if layer.kind == "product":
                F = part.child_rows.shape[1]
                launches.append(
                    Launch(
                        "prod",
                        li,
                        (add(perm[part.rows]), add(perm[part.child_rows])),
                        {"M": int(part.rows.shape[0]), "F": F, "fused_away": li in fusion.skip},
                    )
                )
                continue
            g, G, K = part.shape
            comp = fusion.children.get((li, pi))
            fused = comp is not None
            child = add(perm[comp if fused else part.child_rows])
            F = int(comp.shape[2]) if fused else 1
            bg, bk, use_dot, warps = _sum_tiles(G, K, opt)
            if part.dense:  # ids from start and fan-in: (table slot unused, start, fan-in)
                start = add(part.param_start)
                params = (start, start, add(part.fanin))
            else:
                table = add(part.param_ids)
                params = (table, table, table)
            launches.append(
                Launch(
                    "sum",
                    li,
                    (child, *params, add(perm[part.rows])),
                    {
                        "g": g,
                        "G": G,
                        "K": K,
                        "F": F,
                        "BG": bg,
                        "BK": bk,
                        "NGB": -(-G // bg),
                        "MROW": max_row,
                        "dot": use_dot,
                        "fused": fused,
                        "dense": part.dense,
                        "warps": warps,
                    },
                )
            )
            max_row += g
    return launches, max_row


def emit(program: Program, opt: TritonOptions | None = None) -> Emitted:
    """The Triton module for a Program: fusion plan, launch plan, then the rendered source."""
    opt = opt or TritonOptions()
    arrays: list[np.ndarray] = []

    def add(a: np.ndarray) -> int:
        arrays.append(np.ascontiguousarray(a, dtype=np.int64))
        return len(arrays) - 1

    fusion = plan_fusion(program, opt.fuse)
    perm, compact, complete_rows = _renumber(program, fusion.skip)
    launches, max_row = plan_launches(program, opt, fusion, perm, compact, add)
    source = _Renderer(program, opt, launches, perm, add).render()
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    assert max_row == compact + sum(p.shape[0] for lay in program.layers if lay.kind == "sum" for p in lay.partitions)
    return Emitted(source, arrays, launches, digest, max_row, max_row + complete_rows, perm)


_KERNELS_ALWAYS = ["tiles", "mm", "input_fwd", "em_dense"]
_KERNELS_PROD = ["prod_fwd", "prod_bwd"]
_KERNELS_SUM = [
    "sum_child_values",
    "sum_param_ids",
    "add_child_flows",
    "sum_child_row",
    "sum_param_col",
    "add_child_row_flows",
    "sum_bwd_scale",
    "sum_bwd_terms",
    "sum_fwd",
    "sum_max",
    "sum_bwd",
    "sum_bwd_params",
]


class _Renderer:
    """Writes the module: the kernels the launches need, then one launcher function each for
    the forward, input, max-product, backward and EM passes (straight-line launch lines)."""

    def __init__(self, program: Program, opt: TritonOptions, launches: list[Launch], perm: np.ndarray, add):
        self.program, self.opt, self.launches, self.perm, self.add = program, opt, launches, perm, add
        self.src = IndentedBuffer()
        self.prec = f'PRECISION="{opt.precision}"'

    def render(self) -> str:
        for line in HEADER.splitlines():
            self.src.line(line)
        kinds = {launch.kind for launch in self.launches}
        used = _KERNELS_ALWAYS + (_KERNELS_PROD if "prod" in kinds else []) + (_KERNELS_SUM if "sum" in kinds else [])
        for name in used:
            for line in TEMPLATES[name].splitlines():
                self.src.line(line)
        self.forward()
        self.inputs()
        self.forward_max()
        self.backward()
        self.em_update()
        return self.src.text()

    # -- launch lines ------------------------------------------------------------------------
    def sum_args(self, L: Launch, extra: str = "", block_b: int | None = None) -> str:
        m, (c, p, ps, fa, r) = L.meta, L.idx
        block_b = self.opt.block_b if block_b is None else block_b
        return (
            f"idx[{c}], idx[{p}], idx[{ps}], idx[{fa}], idx[{r}], B, {m['NGB']}, {m['MROW']}, G={m['G']}, K={m['K']}, "
            f"F={m['F']}, NP={self.program.num_sum_params}, BLOCK_G={m['BG']}, BLOCK_K={m['BK']}, "
            f"BLOCK_B={block_b}{extra}, FUSED={m['fused']}, DENSE={m['dense']}, num_warps={m['warps']}"
        )

    def grid_sum(self, L: Launch) -> str:
        return f"({L.meta['g'] * L.meta['NGB']}, triton.cdiv(B, {self.opt.block_b}))"

    def prod_launch(self, L: Launch, fn: str, buf: str) -> str:
        (r, c), bb, bm = L.idx, self.opt.block_b, self.opt.block_m
        return (
            f"{fn}[(triton.cdiv({L.meta['M']}, {bm}), triton.cdiv(B, {bb}))]({buf}, idx[{r}], idx[{c}], B, "
            f"{L.meta['M']}, F={L.meta['F']}, BLOCK_M={bm}, BLOCK_B={bb})"
        )

    # -- launchers ---------------------------------------------------------------------------
    def forward(self) -> None:
        src = self.src
        with src.function(
            "forward(mars, logw, idx, B, complete=False)",
            "Log-likelihood pass; `complete` also writes product rows that fusion skips.",
        ):
            for L in self.launches:
                src.line(f"# layer {L.layer}: {L.kind} {L.meta}")
                if L.kind == "sum":
                    args = self.sum_args(L, f", USE_DOT={L.meta['dot']}")
                    src.line(f"sum_fwd[{self.grid_sum(L)}](mars, logw, {args}, {self.prec})")
                elif L.meta["fused_away"]:
                    src.line("if complete:")
                    with src.indent():
                        src.line(self.prod_launch(L, "prod_fwd", "mars"))
                else:
                    src.line(self.prod_launch(L, "prod_fwd", "mars"))

    def inputs(self) -> None:
        src, program, bb, bm = self.src, self.program, self.opt.block_b, self.opt.block_m
        with src.function(
            "inputs(mars, x_int, x_real, params, idx, B)",
            "Input rows written in place; params[i]: the tensors of input partition i (see input_fwd).",
        ):
            if not program.input_partitions:
                src.line("return")
            V = len(program.var_names)
            for i, part in enumerate(program.input_partitions):
                M, vi = part.size, self.add(part.vars)
                src.line(
                    f"input_fwd[(triton.cdiv({M}, {bm}), triton.cdiv(B, {bb}))](mars, x_int, x_real, *params[{i}], "
                    f"idx[{vi}], {int(self.perm[part.start])}, {M}, {V}, B, K={part.num_cats or 1}, "
                    f"DIST={triton_code(part.dist)}, BLOCK_M={bm}, BLOCK_B={bb})"
                )

    def forward_max(self) -> None:
        with self.src.function(
            "forward_max(mars, logw, idx, B)", "Max-product pass (every row written, for MPE decoding)."
        ):
            for L in self.launches:
                if L.kind == "prod":
                    self.src.line(self.prod_launch(L, "prod_fwd", "mars"))
                else:
                    self.src.line(f"sum_max[{self.grid_sum(L)}](mars, logw, {self.sum_args(L)})")

    def backward(self) -> None:
        """Small tiles compute parameter flows in the same launch (launches, not registers, are
        the cost there), on half batch tiles so both products fit in registers (sm_90: no
        spill); larger ones launch sum_bwd_params, whose batch loop also walks half tiles."""
        src, head, prec = self.src, "mars, flows, logw, grad_logw", self.prec
        pb = max(16, self.opt.block_b // 2)
        with src.function(
            "backward(mars, flows, logw, grad_logw, idx, B)",
            "Top-down flows: node flows into `flows`, parameter flows into `grad_logw`.",
        ):
            for L in reversed(self.launches):
                if L.kind == "prod":
                    if not L.meta["fused_away"]:
                        src.line(self.prod_launch(L, "prod_bwd", "flows"))
                    continue
                dot, m = L.meta["dot"], L.meta
                if m["BG"] * m["BK"] <= self.opt.combined_backward_tile:
                    grid = f"({m['g'] * m['NGB']}, triton.cdiv(B, {pb}))"
                    src.line(
                        f"sum_bwd[{grid}]({head}, {self.sum_args(L, f', USE_DOT={dot}, PARAMS=True', pb)}, {prec})"
                    )
                    continue
                src.line(
                    f"sum_bwd[{self.grid_sum(L)}]({head}, {self.sum_args(L, f', USE_DOT={dot}, PARAMS=False')}, {prec})"
                )
                grid_params = f"({m['g'] * m['NGB']}, {-(-m['K'] // m['BK'])})"
                src.line(f"sum_bwd_params[{grid_params}]({head}, {self.sum_args(L, f', USE_DOT={dot}', pb)}, {prec})")

    def em_update(self) -> None:
        src = self.src
        with src.function(
            "em_update(logits, logw, flows, step, pseudocount)",
            "EM M-step for the dense weight blocks (rows of equal width; `step` a one-element tensor); "
            "the masked tail is done in torch.",
        ):
            if not self.program.dense_blocks:
                src.line("return")
            for a, b, k in self.program.dense_blocks:
                bk = _pow2(k)
                br = max(1, min(64, 4096 // bk))
                rows = (b - a) // k
                src.line(
                    f"em_dense[(triton.cdiv({rows}, {br}),)](logits, logw, flows, {a}, {rows}, step, pseudocount, "
                    f"K={k}, BLOCK_R={br}, BLOCK_K={bk})"
                )


def _renumber(program: Program, skip_product: set[int]) -> tuple[np.ndarray, int, int]:
    """(perm, rows kept, rows skipped): rows of skipped product layers move behind all others and
    behind the sum groups' max rows, keeping relative order (input rows stay where they are)."""
    skipped = np.zeros(program.num_rows, bool)
    for li in skip_product:
        for p in program.layers[li].partitions:
            skipped[p.rows] = True
    kept = int((~skipped).sum())
    n_max = sum(p.shape[0] for lay in program.layers if lay.kind == "sum" for p in lay.partitions)
    perm = np.empty(program.num_rows, dtype=np.int64)
    perm[~skipped] = np.arange(kept)
    perm[skipped] = kept + n_max + np.arange(int(skipped.sum()))
    return perm, kept, int(skipped.sum())
