"""What `pcc emit --target cpu` prints: the kernels' C source, then the launch plan of a Program
(one kernel call per partition, in the order the executor makes them, with its sizes), as C
comments so that the whole text still compiles."""

from __future__ import annotations

from pccompile.ir import Program

from ..fusion import plan_fusion
from ..layers import ProgramTensors
from .build import kernel_source
from .executor import SPARSE_DENSITY, launch_arrays, sparse_partitions


def launch_plan(program: Program, fuse: bool = True, sparse_density: float = SPARSE_DENSITY) -> str:
    """The forward and backward passes' kernel calls, one line each; masked partitions the
    executor runs as sparse blocks (codegen.cpu.sparse) call the sparse kernels."""
    pt = ProgramTensors(program, plan_fusion(program, fuse))
    arrays = launch_arrays(pt)
    sparse = sparse_partitions(pt, sparse_density)
    lines = [f"/* launch plan: {pt.num_rows} rows x B samples, fusion {'on' if pt.fused else 'off'} */"]
    calls = []
    for kind, keys in pt.layer_specs:
        for key in keys:
            if kind == "product":
                a, rows = arrays[key]
                calls.append((key, "product", f"m={a.shape[0]}, F={a.shape[1]}"))
            else:
                sl = arrays[key]
                K, F = sl.comp.shape[1:]
                sizes = f"g={sl.groups}, G={sl.group_size}, K={K}, F={F}, factors read {int(sl.nf.sum())}"
                if sl.outer:  # the outer product of a (K above) and b
                    Kb, Fb = sl.comp_b.shape[1:]
                    sizes += f", outer with Kb={Kb}, Fb={Fb}, factors read {int(sl.nf_b.sum())}"
                blocks = sparse.get(key)
                if blocks is None:
                    calls.append((key, "sum", sizes))
                    continue
                live = f"{blocks.count.shape[0]} blocks, {blocks.param_ids.shape[0]} edges, {blocks.density:.0%} live"
                calls.append((key, "sparse", f"{sizes}, {live}"))
    for direction, order in (("forward", calls), ("backward", calls[::-1])):
        lines.append(f"/* {direction}: */")
        lines += [f"/*   {key}: pc_{kind}_{direction}({sizes}) */" for key, kind, sizes in order]
    return "\n".join(lines) + "\n"


def emit_source(program: Program, fuse: bool = True) -> str:
    """The CPU target's text for a Program: kernels, then its launch plan."""
    return kernel_source() + "\n" + launch_plan(program, fuse)
