"""Circuit <-> (JSON-able dict, dict of named numpy arrays): the IR's storage form.

Arrays (parameters, masks, product indices) are kept apart from the JSON so a container such as
safetensors can hold them without pickling anything."""

from __future__ import annotations

import numpy as np

from .circuit import Circuit, Variable
from .distributions import DISTRIBUTIONS, Categorical, Domain
from .errors import FormatError
from .nodes import InputNode, ProductNode, SumNode

IR_VERSION = 1


def circuit_to_storage(circuit: Circuit) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for nid, n in circuit.nodes.items():
        d = {"id": nid, "name": n.name, "kind": n.kind, "size": n.size}
        if isinstance(n, InputNode):
            d.update(var=n.var, dist=n.dist.name, num_cats=n.dist.num_cats)
        else:
            d["children"] = list(n.children)
        if isinstance(n, ProductNode) and n.index is not None:
            d["index"] = [ix is not None for ix in n.index]
            for k, ix in enumerate(n.index):
                if ix is not None:
                    arrays[f"index.{nid}.{k}"] = np.asarray(ix, dtype=np.int64)
        if isinstance(n, SumNode):
            d["tie"] = n.tie
            if n.mask is not None:
                arrays[f"mask.{nid}"] = np.asarray(n.mask, dtype=np.uint8)
        nodes.append(d)
    for nid, p in circuit.params.items():
        for k, v in p.items():
            arrays[f"param.{nid}.{k}"] = np.ascontiguousarray(np.asarray(v, dtype=np.float32))
    meta = {"ir_version": IR_VERSION, "root": circuit.root, "meta": dict(circuit.meta),
            "variables": [{"name": v.name, "num_cats": v.domain.num_cats} for v in circuit.variables],
            "nodes": nodes}
    return meta, arrays


def circuit_from_storage(meta: dict, arrays: dict[str, np.ndarray]) -> Circuit:
    if meta.get("ir_version") != IR_VERSION:
        raise FormatError(f"IR version {meta.get('ir_version')!r} is not supported (this build reads {IR_VERSION})")
    try:
        variables = tuple(Variable(v["name"], Domain(v["num_cats"])) for v in meta["variables"])
        nodes = {}
        for d in meta["nodes"]:
            nid = int(d["id"])
            if d["kind"] == "input":
                cls = DISTRIBUTIONS[d["dist"]]
                dist = cls(d["num_cats"]) if cls is Categorical else cls()
                nodes[nid] = InputNode(nid, d["name"], int(d["var"]), int(d["size"]), dist)
            elif d["kind"] == "product":
                index = None
                if "index" in d:
                    index = tuple(arrays[f"index.{nid}.{k}"] if has else None for k, has in enumerate(d["index"]))
                nodes[nid] = ProductNode(nid, d["name"], tuple(d["children"]), int(d["size"]), index)
            else:
                mask = arrays.get(f"mask.{nid}")
                nodes[nid] = SumNode(nid, d["name"], tuple(d["children"]), int(d["size"]),
                                     None if mask is None else mask.astype(bool), d.get("tie"))
        params: dict[int, dict[str, np.ndarray]] = {}
        for key, v in arrays.items():
            if key.startswith("param."):
                _, nid, name = key.split(".", 2)
                params.setdefault(int(nid), {})[name] = np.asarray(v)
        return Circuit(variables, nodes, int(meta["root"]), params, dict(meta.get("meta", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(f"malformed circuit record: {e!r}") from None
