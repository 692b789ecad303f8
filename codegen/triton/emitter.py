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

from pccompile.ir import ONE_ROW, ZERO_ROW, Program

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


def emit(program: Program, opt: TritonOptions | None = None) -> Emitted:
    opt = opt or TritonOptions()
    layers = program.layers
    arrays: list[np.ndarray] = []

    def add(a: np.ndarray) -> int:
        arrays.append(np.ascontiguousarray(a, dtype=np.int64))
        return len(arrays) - 1

    # who reads each row: (layer index, partition index)
    readers: dict[int, set[tuple[int, int]]] = {}
    for li, layer in enumerate(layers[1:], start=1):
        for pi, part in enumerate(layer.partitions):
            for r in np.unique(part.child_rows):
                readers.setdefault(int(r), set()).add((li, pi))

    launches: list[Launch] = []
    skip_product = set()
    fused_children: dict[tuple[int, int], np.ndarray] = {}
    for li, layer in enumerate(layers[1:], start=1):
        if layer.kind != "product" or not opt.fuse or li + 1 >= len(layers) or layers[li + 1].kind != "sum":
            continue
        rows = np.concatenate([p.rows for p in layer.partitions])
        F = max(p.child_rows.shape[1] for p in layer.partitions)
        factors = np.full((program.num_rows, F), ONE_ROW, dtype=np.int64)  # row -> its factor rows
        for p in layer.partitions:
            factors[p.rows, :p.child_rows.shape[1]] = p.child_rows
        is_prod = np.zeros(program.num_rows, bool)
        is_prod[rows] = True
        fusable = set()
        for pi, sp in enumerate(layers[li + 1].partitions):
            ch = sp.child_rows
            if np.all(is_prod[ch] | (ch == ZERO_ROW)):
                fusable.add(pi)
                comp = factors[ch]  # [g, K, F]
                comp[ch == ZERO_ROW] = ONE_ROW
                comp[ch == ZERO_ROW, 0] = ZERO_ROW  # a padded child is -inf
                fused_children[(li + 1, pi)] = comp
        only_fused = all(readers.get(int(r), set()) <= {(li + 1, pi) for pi in fusable} for r in rows)
        if only_fused and program.root_row not in set(rows.tolist()):
            skip_product.add(li)

    perm, compact, complete_rows = _renumber(program, skip_product)
    max_row = compact  # each sum group's max over its children is saved in its own row
    for li, layer in enumerate(layers[1:], start=1):
        for pi, part in enumerate(layer.partitions):
            if layer.kind == "product":
                F = part.child_rows.shape[1]
                launches.append(Launch("prod", li, (add(perm[part.rows]), add(perm[part.child_rows])),
                                       {"M": int(part.rows.shape[0]), "F": F, "fused_away": li in skip_product}))
                continue
            g, G, K = part.shape
            comp = fused_children.get((li, pi))
            fused = comp is not None
            child = add(perm[comp if fused else part.child_rows])
            F = int(comp.shape[2]) if fused else 1
            bg = min(_pow2(G), opt.max_block_g)
            use_dot = opt.use_dot and bg >= 16 and opt.block_b >= 16
            bk = min(_pow2(K), opt.max_block_k)
            if use_dot:
                bk = max(bk, 16)
            else:  # the multiply-reduce holds a [BLOCK_G, BLOCK_K, BLOCK_B] temporary: keep it in registers
                bk = min(bk, max(1, 2048 // (bg * opt.block_b)))
            if part.dense:  # ids from start and fan-in: (table slot unused, start, fan-in)
                start = add(part.param_start)
                params = (start, start, add(part.fanin))
            else:
                table = add(part.param_ids)
                params = (table, table, table)
            warps = opt.num_warps or (8 if bg * opt.block_b >= 2048 else 4)
            launches.append(Launch("sum", li, (child, *params, add(perm[part.rows])),
                                   {"g": g, "G": G, "K": K, "F": F, "BG": bg, "BK": bk, "NGB": -(-G // bg),
                                    "MROW": max_row, "dot": use_dot, "fused": fused, "dense": part.dense,
                                    "warps": warps}))
            max_row += g

    src = IndentedBuffer()
    for line in HEADER.splitlines():
        src.line(line)
    kinds = {launch.kind for launch in launches}
    used = ["tiles", "mm", "input_fwd", "em_dense"]
    if "prod" in kinds:
        used += ["prod_fwd", "prod_bwd"]
    if "sum" in kinds:
        used += ["sum_child_values", "sum_param_ids", "add_child_flows", "sum_child_row", "sum_param_col",
                 "add_child_row_flows", "sum_bwd_scale", "sum_bwd_terms", "sum_fwd", "sum_max", "sum_bwd", "sum_bwd_params"]
    for name in used:
        for line in TEMPLATES[name].splitlines():
            src.line(line)
    np_ = program.num_sum_params
    bb, bm = opt.block_b, opt.block_m
    prec = f'PRECISION="{opt.precision}"'

    def sum_args(L, extra="", block_b=bb):
        m = L.meta
        c, p, ps, fa, r = L.idx
        return (f"idx[{c}], idx[{p}], idx[{ps}], idx[{fa}], idx[{r}], B, {m['NGB']}, {m['MROW']}, G={m['G']}, K={m['K']}, "
                f"F={m['F']}, NP={np_}, BLOCK_G={m['BG']}, BLOCK_K={m['BK']}, BLOCK_B={block_b}{extra}, "
                f"FUSED={m['fused']}, DENSE={m['dense']}, num_warps={m['warps']}")

    def grid_sum(L):
        return f"({L.meta['g'] * L.meta['NGB']}, triton.cdiv(B, {bb}))"

    def prod_launch(L, fn, buf):
        r, c = L.idx
        return (f"{fn}[(triton.cdiv({L.meta['M']}, {bm}), triton.cdiv(B, {bb}))]({buf}, idx[{r}], idx[{c}], B, "
                f"{L.meta['M']}, F={L.meta['F']}, BLOCK_M={bm}, BLOCK_B={bb})")

    with src.function("forward(mars, logw, idx, B, complete=False)",
                      "Log-likelihood pass; `complete` also writes product rows that fusion skips."):
        for L in launches:
            src.line(f"# layer {L.layer}: {L.kind} {L.meta}")
            if L.kind == "prod":
                if L.meta["fused_away"]:
                    src.line("if complete:")
                    with src.indent():
                        src.line(prod_launch(L, "prod_fwd", "mars"))
                else:
                    src.line(prod_launch(L, "prod_fwd", "mars"))
            else:
                dot = L.meta["dot"]
                src.line(f"sum_fwd[{grid_sum(L)}](mars, logw, {sum_args(L, f', USE_DOT={dot}')}, {prec})")
    dist_code = {"categorical": 0, "bernoulli": 1, "gaussian": 2}
    with src.function("inputs(mars, x_int, x_real, params, idx, B)",
                      "Input rows written in place; params[i]: the tensors of input partition i (see input_fwd)."):
        if not program.input_partitions:
            src.line("return")
        V = len(program.var_names)
        for i, part in enumerate(program.input_partitions):
            M = part.size
            vi = add(part.vars)
            src.line(f"input_fwd[(triton.cdiv({M}, {bm}), triton.cdiv(B, {bb}))](mars, x_int, x_real, *params[{i}], "
                     f"idx[{vi}], {int(perm[part.start])}, {M}, {V}, B, K={part.num_cats or 1}, DIST={dist_code[part.dist]}, "
                     f"BLOCK_M={bm}, BLOCK_B={bb})")
    with src.function("forward_max(mars, logw, idx, B)",
                      "Max-product pass (every row written, for MPE decoding)."):
        for L in launches:
            if L.kind == "prod":
                src.line(prod_launch(L, "prod_fwd", "mars"))
            else:
                src.line(f"sum_max[{grid_sum(L)}](mars, logw, {sum_args(L)})")
    with src.function("backward(mars, flows, logw, grad_logw, idx, B)",
                      "Top-down flows: node flows into `flows`, parameter flows into `grad_logw`."):
        for L in reversed(launches):
            if L.kind == "prod":
                if not L.meta["fused_away"]:
                    src.line(prod_launch(L, "prod_bwd", "flows"))
            else:
                dot = L.meta["dot"]
                head = "mars, flows, logw, grad_logw"
                # small tiles: parameter flows in the same launch (launches, not registers, are the cost)
                # Small tiles: parameter flows in the same launch (launches, not registers, are the
                # cost there), on half batch tiles so both products fit in registers (sm_90: no spill).
                # Larger ones: sum_bwd_params, whose batch loop also walks half tiles.
                pb = max(16, bb // 2)
                if L.meta["BG"] * L.meta["BK"] <= opt.combined_backward_tile:
                    grid = f"({L.meta['g'] * L.meta['NGB']}, triton.cdiv(B, {pb}))"
                    src.line(f"sum_bwd[{grid}]({head}, {sum_args(L, f', USE_DOT={dot}, PARAMS=True', pb)}, {prec})")
                    continue
                src.line(f"sum_bwd[{grid_sum(L)}]({head}, {sum_args(L, f', USE_DOT={dot}, PARAMS=False')}, {prec})")
                grid_params = f"({L.meta['g'] * L.meta['NGB']}, {-(-L.meta['K'] // L.meta['BK'])})"
                src.line(f"sum_bwd_params[{grid_params}]({head}, {sum_args(L, f', USE_DOT={dot}', pb)}, {prec})")
    with src.function("em_update(logits, logw, flows, step, pseudocount)",
                      "EM M-step for the dense weight blocks (rows of equal width; `step` a one-element tensor); "
                      "the masked tail is done in torch."):
        if not program.dense_blocks:
            src.line("return")
        for a, b, k in program.dense_blocks:
            bk = _pow2(k)
            br = max(1, min(64, 4096 // bk))
            rows = (b - a) // k
            src.line(f"em_dense[(triton.cdiv({rows}, {br}),)](logits, logw, flows, {a}, {rows}, step, pseudocount, "
                     f"K={k}, BLOCK_R={br}, BLOCK_K={bk})")
    source = src.text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    assert max_row == compact + sum(p.shape[0] for lay in layers if lay.kind == "sum" for p in lay.partitions)
    return Emitted(source, arrays, launches, digest, max_row, max_row + complete_rows, perm)


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
