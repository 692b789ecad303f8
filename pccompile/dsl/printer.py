"""IR Circuit -> DSL text. parse(print_circuit(c)) gives back the same circuit (ids, names,
structure and, unless params=False, every parameter bit-for-bit in float32)."""

from __future__ import annotations

import re

import numpy as np

from pccompile.ir import ArgumentError, Circuit, InputNode, ProductNode, compact_ids

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
_ITEM = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*)\[(\d+)\]$")
_KEYWORDS = {"var", "output"}


def _num(v) -> str:
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def _list(a: np.ndarray, fmt=_num) -> str:
    a = np.asarray(a)
    if a.ndim == 1:
        return "[" + ", ".join(fmt(v) for v in a) + "]"
    return "[" + ", ".join(_list(r, fmt) for r in a) + "]"


def _check_name(name: str, what: str) -> str:
    if not _IDENT.match(name) or name in _KEYWORDS:
        raise ArgumentError(f"{what} name '{name}' cannot be written as DSL (use letters, digits, _)")
    return name


def _var_lines(circuit: Circuit) -> list[str]:
    lines, i, vs = [], 0, circuit.variables
    while i < len(vs):
        m = _ITEM.match(vs[i].name)
        if m and int(m.group(2)) == 0:
            base, j = m.group(1), i
            while j < len(vs) and vs[j].domain == vs[i].domain and vs[j].name == f"{base}[{j - i}]":
                j += 1
            lines.append(f"var {_check_name(base, 'variable')}[{j - i}] : {vs[i].domain.describe()}")
            i = j
            continue
        j = i
        names = []
        while j < len(vs) and vs[j].domain == vs[i].domain and not _ITEM.match(vs[j].name):
            names.append(_check_name(vs[j].name, "variable"))
            j += 1
        if not names:
            raise ArgumentError(f"variable name '{vs[i].name}' cannot be written as DSL")
        lines.append(f"var {', '.join(names)} : {vs[i].domain.describe()}")
        i = j
    return lines


def print_circuit(circuit: Circuit, *, params: bool = True) -> str:
    ids = list(circuit.nodes)
    if ids != list(range(len(ids))):
        circuit = compact_ids(circuit)
    out = [f"# {circuit!r}"]
    out += _var_lines(circuit)
    if "image" in circuit.meta:
        out.append(f"image = [{', '.join(str(s) for s in circuit.meta['image'])}]")
    if "name" in circuit.meta:
        out.append(f'name = "{circuit.meta["name"]}"')
    if circuit.meta.get("signed"):
        out.append("signed = true")
    nodes = circuit.nodes
    for nid, n in nodes.items():
        name = _check_name(n.name, "node")
        p = circuit.params.get(nid) if params else None
        if isinstance(n, InputNode):
            args = [circuit.variables[n.var].name]
            if p is not None:
                args += [f"{k}={_list(np.asarray(p[k]))}" for k in n.dist.param_names]
            out.append(f"{name}[{n.size}] = {n.dist.name}({', '.join(args)})")
        elif isinstance(n, ProductNode):
            kids = []
            for k, c in enumerate(n.children):
                cname = nodes[c].name
                if n.index is not None and n.index[k] is not None:
                    cname += "[" + _list(n.child_rows(k), str) + "]"
                kids.append(cname)
            out.append(f"{name}[{n.size}] = product({', '.join(kids)})")
        else:
            args = [nodes[c].name for c in n.children]
            if n.mask is not None:
                args.append("mask=" + _list(np.asarray(n.mask).astype(int), str))
            if n.tie is not None:
                args.append(f"tie={nodes[n.tie].name}")
            elif p is not None:
                args.append("weights=" + _list(np.asarray(p["weights"])))
            out.append(f"{name}[{n.size}] = sum({', '.join(args)})")
    # The parser's default output is the node named `root`, else the last node defined.
    names = [x.name for x in nodes.values()]
    default = "root" if "root" in names else names[-1]
    if nodes[circuit.root].name != default:
        out.append(f"output {nodes[circuit.root].name}")
    return "\n".join(out) + "\n"
