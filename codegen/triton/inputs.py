"""Input families on the Triton backend: `input_fwd` is assembled from the families' snippets
(`Family.triton_snippet`, pccompile.ir.families), one constexpr branch per family, its DIST code
the family's place in the registry; a new family adds nothing here, in the emitter or the
executor.

A snippet computes `lp` [BLOCK_M, BLOCK_B] from the loaded values; it sees `offs_m`, `mask_m`,
`mask` and, for discrete families, `xc` (the category, 0 where missing) or, for real ones, `xv`
(0 where missing), and the parameter pointers p0, p1."""

from __future__ import annotations

from pccompile.ir.families import FAMILIES, family, triton_code


def input_tensors(part, params: dict):
    """(p0, p1) of one partition: the tensors its family's snippet reads."""
    return family(part.dist).triton_tensors(params, part)


def input_kernel() -> str:
    """The source of `input_fwd`, one constexpr branch per family."""
    lines = [
        '''
@triton.jit
def input_fwd(mars, x_int, x_real, p0, p1, vars, START, M, V, B, K: tl.constexpr, DIST: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_B: tl.constexpr):
    """mars[START + i] = log p(x[:, vars[i]]) for the M input nodes of one partition, written in
    place (no [M, B] index or value temporaries); 0 where the value is missing (marginalised).
    x is [B, V], row-major. Per family (DIST):'''
    ]
    for f in FAMILIES.values():
        lines.append(f"    {triton_code(f.name)}, {f.name}: {f.triton_doc}.")
    lines.append('    """')
    lines.append("    offs_m, offs_b, mask_m, mask = row_tile(M, B, BLOCK_M, BLOCK_B)")
    lines.append("    v = tl.load(vars + offs_m, mask=mask_m, other=0)")
    for k, f in enumerate(FAMILIES.values()):
        lines.append(f"    {'if' if k == 0 else 'elif'} DIST == {triton_code(f.name)}:  # {f.name}")
        if f.is_real:
            lines += [
                "        xv = tl.load(x_real + offs_b[None, :] * V + v[:, None], mask=mask, other=0.0)",
                "        miss = xv != xv",
                "        xv = tl.where(miss, 0.0, xv)",
            ]
        else:
            lines += [
                "        xv = tl.load(x_int + offs_b[None, :] * V + v[:, None], mask=mask, other=0)",
                "        miss = xv < 0",
                "        xc = tl.maximum(xv, 0)",
            ]
        lines += ["        " + ln for ln in f.triton_snippet.splitlines()]
    lines.append(
        "    tl.store(mars + (START + offs_m)[:, None] * B + offs_b[None, :], tl.where(miss, 0.0, lp), mask=mask)"
    )
    return "\n".join(lines) + "\n"
