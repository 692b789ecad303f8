"""Circuit <-> (JSON-able dict, dict of named numpy arrays): the IR's storage form.

Arrays (parameters, masks, product indices) are kept apart from the JSON so a container such as
safetensors can hold them without pickling anything."""

from __future__ import annotations

from typing import Any

import numpy as np

from .circuit import Circuit, Region, Variable
from .distributions import Domain
from .errors import FormatError
from .families import DISTRIBUTIONS, make_distribution
from .nodes import InputNode, Node, ProductNode, SumNode

IR_VERSION = 1


def circuit_to_storage(circuit: Circuit) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for nid, n in circuit.nodes.items():
        d: dict[str, Any] = {"id": nid, "name": n.name, "kind": n.kind, "size": n.size}
        if isinstance(n, InputNode):
            d.update(var=n.var, dist=n.dist.name, num_cats=n.dist.num_cats)
        else:
            d["children"] = list(n.children)
        if isinstance(n, ProductNode) and n.index is not None:
            d["index"] = [ix is not None for ix in n.index]
            for k, ix in enumerate(n.index):
                if ix is not None:
                    arrays[f"index.{nid}.{k}"] = np.ascontiguousarray(ix, dtype=np.int64)
        if isinstance(n, SumNode):
            d["tie"] = n.tie
            if n.mask is not None:
                arrays[f"mask.{nid}"] = np.ascontiguousarray(n.mask, dtype=np.uint8)
        nodes.append(d)
    for nid, p in circuit.params.items():
        for key, v in p.items():
            arrays[f"param.{nid}.{key}"] = np.ascontiguousarray(np.asarray(v, dtype=np.float32))
    meta: dict[str, Any] = {
        "ir_version": IR_VERSION,
        "root": circuit.root,
        "meta": dict(circuit.meta),
        "regions": [
            {"node": nid, "name": r.name, "variables": list(r.variables)} for nid, r in circuit.regions.items()
        ],
        "variables": [
            {"name": v.name, "num_cats": v.domain.num_cats, **({"count": True} if v.domain.count else {})}
            for v in circuit.variables
        ],
        "nodes": nodes,
    }
    return meta, arrays


def circuit_from_storage(meta: dict, arrays: dict[str, np.ndarray]) -> Circuit:
    """The Circuit of a storage record; every field is type-checked so that a tampered record is a
    FormatError naming the node and field, never a KeyError or TypeError. (Structural rules are
    left to `verify`, which the loader runs next.)"""
    if not isinstance(meta, dict):
        raise FormatError("the circuit record is not a JSON object")
    if meta.get("ir_version") != IR_VERSION:
        raise FormatError(f"IR version {meta.get('ir_version')!r} is not supported (this build reads {IR_VERSION})")
    variables = tuple(_variable(k, v) for k, v in enumerate(_field(meta, "variables", list, "circuit")))
    nodes: dict[int, Node] = {}
    for k, d in enumerate(_field(meta, "nodes", list, "circuit")):
        node = _node(d, arrays, f"node record {k}")
        if node.id in nodes:
            raise FormatError(f"node id {node.id} appears twice in the circuit record")
        nodes[node.id] = node
    params: dict[int, dict[str, np.ndarray]] = {}
    for key, v in arrays.items():
        if key.startswith("param."):
            _, nid, name = (key.split(".", 2) + ["", ""])[:3]
            if not nid.isdigit() or int(nid) not in nodes or not name:
                raise FormatError(f"tensor '{key}' names no node of the circuit")
            params.setdefault(int(nid), {})[name] = np.asarray(v)
    root = _int(meta, "root", "circuit")
    extra = meta.get("meta", {})
    if not isinstance(extra, dict):
        raise FormatError("the circuit record's 'meta' is not a JSON object")
    if root not in nodes:
        raise FormatError(f"the root id {root} is not a node of the circuit record")
    return Circuit(variables, nodes, root, params, dict(extra), _regions(meta.get("regions", []), nodes))


def _regions(records, nodes: dict) -> dict[int, Region]:
    if not isinstance(records, list):
        raise FormatError("the circuit record's 'regions' is not a list")
    out = {}
    for k, d in enumerate(records):
        where = f"region record {k}"
        nid = _int(d, "node", where)
        variables = _field(d, "variables", list, where)
        if nid not in nodes or not all(isinstance(v, int) and not isinstance(v, bool) for v in variables):
            raise FormatError(f"{where} names no node of the circuit, or variables that are not indices")
        out[nid] = Region(_field(d, "name", str, where), tuple(variables))
    return out


def _field(d: dict, key: str, kind, where: str):
    if not isinstance(d, dict) or key not in d:
        raise FormatError(f"{where}: field '{key}' is missing")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(
            f"{where}: field '{key}' is {type(value).__name__} {_short(value)}; expected "
            f"{getattr(kind, '__name__', kind)}"
        )
    return value


def _int(d: dict, key: str, where: str, low: int = 0) -> int:
    value = _field(d, key, int, where)
    if value < low:
        raise FormatError(f"{where}: field '{key}' is {value}; expected at least {low}")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _variable(k: int, v) -> Variable:
    where = f"variable record {k}"
    name = _field(v, "name", str, where)
    cats = v.get("num_cats") if isinstance(v, dict) else None
    if cats is not None and (isinstance(cats, bool) or not isinstance(cats, int) or cats < 2):
        raise FormatError(f"{where}: field 'num_cats' is {_short(cats)}; expected an integer >= 2 or null")
    count = v.get("count", False) is True and cats is None
    return Variable(name, Domain(cats, count=count))


def _array(arrays: dict, key: str, where: str, kinds: str) -> np.ndarray:
    if key not in arrays:
        raise FormatError(f"{where}: tensor '{key}' is missing")
    a = np.asarray(arrays[key])
    if a.dtype.kind not in kinds or a.ndim not in (1, 2):
        raise FormatError(f"{where}: tensor '{key}' is {a.dtype} of {a.ndim} dimensions")
    return a


def _node(d, arrays: dict, where: str) -> Node:
    nid = _int(d, "id", where)
    where = f"node {nid}"
    name = _field(d, "name", str, where)
    kind = _field(d, "kind", str, where)
    size = _int(d, "size", where, 1)
    if kind == "input":
        dist_name = _field(d, "dist", str, where)
        if dist_name not in DISTRIBUTIONS:
            raise FormatError(f"{where}: unknown distribution {dist_name!r}")
        fam = DISTRIBUTIONS[dist_name]
        cats = None if fam.is_real or fam.is_count else _int(d, "num_cats", where, 2)
        dist = make_distribution(dist_name, cats)
        return InputNode(nid, name, _int(d, "var", where), size, dist)
    if kind not in ("product", "sum"):
        raise FormatError(f"{where}: unknown kind {kind!r}; expected input, product or sum")
    children = _field(d, "children", list, where)
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in children):
        raise FormatError(f"{where}: field 'children' must list node ids")
    if kind == "product":
        index = None
        if "index" in d:
            flags = _field(d, "index", list, where)
            if len(flags) != len(children) or not all(isinstance(f, bool) for f in flags):
                raise FormatError(f"{where}: field 'index' must hold one true/false per child")
            index = tuple(
                _array(arrays, f"index.{nid}.{k}", where, "iu").astype(np.int64) if has else None
                for k, has in enumerate(flags)
            )
        return ProductNode(nid, name, tuple(children), size, index)
    tie = d.get("tie")
    if tie is not None and (isinstance(tie, bool) or not isinstance(tie, int)):
        raise FormatError(f"{where}: field 'tie' is {_short(tie)}; expected a node id or null")
    mask = arrays.get(f"mask.{nid}")
    if mask is not None:
        mask = _array(arrays, f"mask.{nid}", where, "biu")
        if not np.isin(mask, (0, 1)).all():
            raise FormatError(f"{where}: tensor 'mask.{nid}' holds values other than 0 and 1")
        mask = mask.astype(bool)
    return SumNode(nid, name, tuple(children), size, mask, tie)
