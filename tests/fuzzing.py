"""A seeded fuzzer of our own: mutated `.pc` text, mutated networkx graphs, tampered `.pcz` files,
and (tests/fuzz_setups.py) every option, metadata field and environment variable given awkward values.

Every case must end in success or a PCError (for `pcc` commands: exit 0, or exit 2 with one
message), within a time limit. A case that compiles or loads
is also checked for a right answer: a mutated networkx graph that compiles must give the
probabilities a brute-force evaluation of the graph gives, and a loaded model must evaluate
finite. `run_cases` returns the cases that broke the rule, with what happened.

    python tests/fuzzing.py --fuzz 10000      # a long run; prints the outcome counts
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import re
import signal
import sys
import time
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from pccompile.ir import PCError

import pccompile as pc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CASE_SECONDS = 60  # a case running longer counts as a hang (the largest legal HMM takes about 20 s)
# big-but-legal circuits are refused fast under this limit instead of allocating gigabytes
MEMORY_LIMIT = str(512 << 20)

SEED_TEXTS = [(EXAMPLES / name).read_text() for name in ("mixture.pc", "sparse.pc", "hmm.pc")] + [
    "var x[6] : binary\nroot = rat_spn(x, depth=2, repetitions=2, sums=3, inputs=2, seed=1)\n",
    "var px[16] : categorical(3)\nimage = [4, 4]\nroot = pd(px, latents=2, delta=2)\n",
    'var x[16] : binary\nroot = hclt(x, latents=4, data="data/nltcs/nltcs.valid.data.gz", max_rows=300)\n',
    "var h : real\nvar a : binary\nlh[2] = gaussian(h, mean=[0, 1], std=[1e-3, 2])\nla[2] = bernoulli(a)\n"
    "p = product(lh, la)\nroot = sum(p)\noutput root\n",
]

INTERESTING = [
    "0",
    "-1",
    "1",
    "2",
    "65536",
    "65537",
    "100000",
    "99999999999999999999",
    "4611686018427387905",
    "1e999",
    "-1e999",
    "1e-40",
    "0.5",
    "2.5",
    "-0",
    '"abc"',
    '""',
    "[]",
    "[[]]",
    "[0, 1]",
    "x",
    "root",
    "nan",
    "inf",
]
JUNK = [
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    ":",
    "#",
    "\n",
    "\r",
    "\f",
    "\t",
    "\x00",
    "var",
    "output",
    "sum(",
    "product(",
    "[" * 300,
    "]" * 300,
    "é",
    "\ufeff",
    "😀",
]
TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z_]\w*|[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\s+|.', re.S)


class Hang(Exception):
    pass


@dataclass
class Outcome:
    kind: str  # "ok", "pcerror", or what broke the rule
    case: str
    detail: str = ""


# -- .pc text ---------------------------------------------------------------------------------
def mutate_text(text: str, rng: np.random.Generator) -> str | bytes:
    """One to three grammar-aware token mutations, or a byte-level one."""
    if rng.random() < 0.25:
        return _mutate_bytes(text.encode(), rng)
    toks = TOKEN.findall(text)
    words = [t for t in toks if re.fullmatch(r"[A-Za-z_]\w*", t)]
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(toks)))
        op = rng.integers(6)
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[int(rng.integers(len(toks)))])
        elif op == 2:
            j = int(rng.integers(len(toks)))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3 and re.fullmatch(r"[+-]?\d.*", toks[i]):
            toks[i] = str(rng.choice(INTERESTING))
        elif op == 4 and words:
            toks[i] = str(rng.choice(words + ["var", "output", "sum", "product", "hclt", "hmm", "pd", "rat_spn"]))
        else:
            toks.insert(i, str(rng.choice(JUNK + INTERESTING)))
        if not toks:
            break
    return "".join(toks)


def _mutate_bytes(raw: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(raw)
    for _ in range(int(rng.integers(1, 4))):
        if not b:
            break
        op, i = rng.integers(3), int(rng.integers(len(b)))
        if op == 0:
            b[i] = int(rng.integers(256))
        elif op == 1:
            b.insert(i, int(rng.integers(256)))
        else:
            del b[i : i + int(rng.integers(1, 8))]
    return bytes(b)


def run_text(case: str | bytes, tmp: Path) -> None:
    path = EXAMPLES / f".fuzz-{os.getpid()}.pc"  # in examples/ so relative data paths resolve
    path.write_bytes(case.encode("utf-8", "surrogatepass") if isinstance(case, str) else case)
    try:
        model = pc.compile(path)
    finally:
        path.unlink()
    _check_finite(model)


def _check_finite(model) -> None:
    """A model that compiled must evaluate to finite log-likelihoods on valid data."""
    rng = np.random.default_rng(0)
    cats = model.program.var_cats
    x = np.stack([rng.integers(0, c, 4) if c else rng.normal(size=4) for c in cats], axis=1).astype(np.float64)
    with torch.no_grad():
        ll = model(x)
    if not torch.isfinite(ll).all() and not (ll == -math.inf).any():
        raise AssertionError(f"log-likelihoods {ll.tolist()} are not finite")


# -- networkx ---------------------------------------------------------------------------------
def random_graph(rng: np.random.Generator) -> nx.DiGraph:
    from helpers import random_circuit

    circuit = random_circuit(rng, num_vars=int(rng.integers(2, 4)), tie=False, outer=False, sparse=False)
    G = pc.to_networkx(pc.compile(circuit).to_circuit())
    return nx.relabel_nodes(G, {k: (str(k) if rng.random() < 0.7 else i) for i, k in enumerate(G.nodes)})


BAD_VALUES = [
    None,
    "abc",
    "0.5",
    b"x",
    -1,
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    -0.5,
    2.0,
    [],
    [[0.5]],
    [0.5, "a"],
    {"a": 1},
    True,
    complex(1, 1),
    [0.2] * 70000,
    np.float32(0.3),
    0,
]


def mutate_graph(G: nx.DiGraph, rng: np.random.Generator) -> nx.DiGraph:
    G = G.copy()
    nodes = list(G.nodes)
    if rng.random() < 0.4:
        return _benign(G, rng)
    for _ in range(int(rng.integers(1, 3))):
        op = rng.integers(7)
        n = nodes[int(rng.integers(len(nodes)))]
        if op == 0:
            attr = str(rng.choice(["type", "var", "dist", "params"]))
            G.nodes[n][attr] = (
                BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
                if rng.random() < 0.7
                else str(rng.choice(["sum", "product", "input", "categorical", "bernoulli", "gaussian"]))
            )
        elif op == 1 and G.number_of_edges():
            e = list(G.edges)[int(rng.integers(G.number_of_edges()))]
            G.edges[e]["weight"] = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
        elif op == 2:
            G.add_edge(n, nodes[int(rng.integers(len(nodes)))], weight=0.5)
        elif op == 3 and G.number_of_edges():
            G.remove_edge(*list(G.edges)[int(rng.integers(G.number_of_edges()))])
        elif op == 4:
            G.add_node(("new", int(rng.integers(100))))
        elif op == 5:
            G.nodes[n].pop("type", None)
        else:
            G.nodes[n].clear()
    return nx.MultiDiGraph(G) if rng.random() < 0.03 else G


def _benign(G: nx.DiGraph, rng: np.random.Generator) -> nx.DiGraph:
    """Changes that keep a valid graph valid (new weights, renormalised; a product given a second
    child over the same variables, which must be refused), so that compiles are checked too."""
    sums = [k for k, a in G.nodes(data=True) if a.get("type") == "sum"]
    for k in sums:
        kids = list(G.successors(k))
        w = rng.random(len(kids)) + 0.05
        for c, x in zip(kids, w / w.sum()):
            G.edges[k, c]["weight"] = float(x)
    prods = [k for k, a in G.nodes(data=True) if a.get("type") == "product"]
    if prods and rng.random() < 0.3:
        p = prods[int(rng.integers(len(prods)))]
        kid = next(iter(G.successors(p)))
        twin = ("twin", str(kid))
        G.add_node(twin, **dict(G.nodes[kid]))
        for c in G.successors(kid):
            G.add_edge(twin, c, **G.edges[kid, c])
        G.add_edge(p, twin)
    return G


def graph_prob(G: nx.DiGraph, row) -> float:
    """Brute force: the graph's own meaning at one complete assignment (no pccompile code)."""
    memo: dict = {}
    for key in reversed(list(nx.topological_sort(G))):
        a = G.nodes[key]
        if a["type"] == "input":
            p, v = np.asarray(a["params"], dtype=np.float64).reshape(-1), row[a["var"]]
            memo[key] = (p[0] if v == 1 else 1 - p[0]) if a["dist"] == "bernoulli" else p[v]
        elif a["type"] == "product":
            memo[key] = math.prod(memo[c] for c in G.successors(key))
        else:
            memo[key] = sum(float(G.edges[key, c]["weight"]) * memo[c] for c in G.successors(key))
    root = next(k for k in G.nodes if G.in_degree(k) == 0)
    return memo[root]


def run_graph(G: nx.DiGraph, tmp: Path) -> None:
    model = pc.compile(G, dtype=torch.float64)
    cats = model.program.var_cats
    rows = np.array(np.meshgrid(*[np.arange(c) for c in cats], indexing="ij")).reshape(len(cats), -1).T
    with torch.no_grad():
        got = model(rows).exp().numpy()
    want = np.array([graph_prob(G, r) for r in rows])
    if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
        raise AssertionError(f"miscompiled: p = {got[:4]} for brute force {want[:4]}")


# -- .pcz files ---------------------------------------------------------------------------------
def saved_model(tmp: Path, rng: np.random.Generator) -> bytes:
    from helpers import random_circuit

    model = pc.compile(random_circuit(rng, num_vars=3, gaussian=bool(rng.random() < 0.5)))
    path = tmp / "base.pcz"
    pc.save(model, path)
    return path.read_bytes()


def _members(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate member is one of the tamperings
        for name, data in members:
            z.writestr(name, data)
    return out.getvalue()


def _mutate_json(obj, rng: np.random.Generator, depth: int = 0):
    """Change one value somewhere in a JSON document: delete it, retype it, or shift a number."""
    if isinstance(obj, dict) and obj and (depth < 6 and rng.random() < 0.8):
        k = list(obj)[int(rng.integers(len(obj)))]
        if rng.random() < 0.15:
            del obj[k]
        else:
            obj[k] = _mutate_json(obj[k], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and (depth < 6 and rng.random() < 0.8):
        i = int(rng.integers(len(obj)))
        obj[i] = _mutate_json(obj[i], rng, depth + 1)
        return obj
    choices = [None, -1, 0, 1, 7, 10**20, 2.5, "x", [], {}, True, [0, 1], "categorical"]
    if isinstance(obj, int) and not isinstance(obj, bool) and rng.random() < 0.5:
        return obj + int(rng.integers(-2, 3))
    return choices[int(rng.integers(len(choices)))]


def tamper(raw: bytes, rng: np.random.Generator) -> bytes:
    op = rng.integers(8)
    if op == 0:
        return raw[: int(rng.integers(len(raw)))]
    if op == 1:
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        return bytes(b)
    members = _members(raw)
    if op in (2, 3):
        record = json.loads(members["model.json"])
        for _ in range(int(rng.integers(1, 3))):
            record = _mutate_json(record, rng)
        members["model.json"] = json.dumps(record).encode() if rng.random() < 0.9 else b"[[[" * 5000
        return _zip(list(members.items()))
    if op == 4:  # edit one tensor: NaN, inf, another shape or type, or drop it
        from safetensors.numpy import load, save

        arrays = load(members["arrays.safetensors"])
        key = sorted(arrays)[int(rng.integers(len(arrays)))]
        a = arrays[key]
        edit = rng.integers(5)
        if edit == 0 and a.dtype.kind == "f" and a.size:
            a = a.copy()
            a.flat[int(rng.integers(a.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
            arrays[key] = a
        elif edit == 1:
            arrays[key] = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
        elif edit == 2:
            arrays[key] = a.astype(np.float16 if a.dtype.kind == "f" else np.float32)
        elif edit == 3:
            arrays[key] = (a.astype(np.int64) + int(rng.integers(-3, 50))) if a.dtype.kind in "iu" else a * -1
        else:
            del arrays[key]
        members["arrays.safetensors"] = save(arrays) if arrays else b""
        return _zip(list(members.items()))
    if op == 5:  # an extra member: a path that escapes, a pickle, a duplicate
        name = str(rng.choice(["../x", "/etc/evil", "model.pkl", "model.json", "a/../../b"]))
        data = pickle.dumps({"boom": 1}) if name.endswith("pkl") else b"payload"
        return _zip(list(members.items()) + [(name, data)])
    if op == 6:  # a member that inflates far beyond its size on disk
        big = "arrays.safetensors" if rng.random() < 0.5 else "model.json"
        members[big] = b"\0" * (80 << 20)
        return _zip(list(members.items()))
    members.pop(str(rng.choice(list(members))))
    return _zip(list(members.items()))


def run_pcz(raw: bytes, tmp: Path) -> None:
    path = tmp / f"case-{os.getpid()}.pcz"
    path.write_bytes(raw)
    model = pc.load(path)
    _check_finite(model)


# -- the command line ---------------------------------------------------------------------------
def cli_case(rng: np.random.Generator, pcz: list[bytes]) -> list:
    """A `pcc` command over a mutated .pc file or a tampered model: [command, file bytes, suffix]."""
    if rng.random() < 0.5:
        text = mutate_text(SEED_TEXTS[int(rng.integers(len(SEED_TEXTS)))], rng)
        raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        return [str(rng.choice(["check", "show", "sample"])), raw, ".pc"]
    return [str(rng.choice(["eval", "sample", "mpe"])), tamper(pcz[int(rng.integers(len(pcz)))], rng), ".pcz"]


def run_cli(case: list, tmp: Path) -> None:
    """The command must exit 0, or 2 with one `error:` message; never a traceback."""
    from typer.testing import CliRunner

    from pccompile.cli import app

    command, raw, suffix = case
    path = (EXAMPLES if suffix == ".pc" else tmp) / f".fuzz-{os.getpid()}{suffix}"
    path.write_bytes(raw)
    data = tmp / "rows.npy"
    np.save(data, np.zeros((2, 3), dtype=np.int64))
    args = (
        [command, str(path)]
        + (["--data", str(data)] if command in ("eval", "mpe") else [])
        + (["-n", "2"] if command == "sample" else [])
    )
    try:
        r = CliRunner().invoke(app, args)
    finally:
        path.unlink()
    if r.exit_code == 2 and "error:" in r.output:
        raise PCError("the command reported an error")  # counted as a clean refusal
    if r.exit_code != 0 or (r.exception is not None and not isinstance(r.exception, SystemExit)):
        raise AssertionError(f"exit {r.exit_code}: {r.output[-300:]} {r.exception!r}")


# -- the runner ---------------------------------------------------------------------------------
def _alarm(signum, frame):
    raise Hang()


def run_one(fn, case, tmp: Path, label: str) -> Outcome:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        fn(case, tmp)
        return Outcome("ok", label)
    except PCError:
        return Outcome("pcerror", label)
    except Hang:
        return Outcome("hang", label, f"over {CASE_SECONDS} s")
    except BaseException as e:  # noqa: BLE001 - classifying every other outcome is the point
        return Outcome(type(e).__name__, label, str(e)[:300])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def cases(kind: str, n: int, seed: int, tmp: Path):
    """(fn, case, label) for n cases of one kind, all drawn from one seed (the enumerated kinds
    of tests/fuzz_setups.py: all their cases, whatever n says)."""
    import fuzz_setups

    if kind in fuzz_setups.KINDS:
        yield from fuzz_setups.cases(kind, tmp)
        return
    rng = np.random.default_rng([seed, {"dsl": 0, "networkx": 1, "pcz": 2, "cli": 3}[kind]])
    if kind == "dsl":
        for i in range(n):
            yield run_text, mutate_text(SEED_TEXTS[i % len(SEED_TEXTS)], rng), f"dsl #{i}"
    elif kind == "networkx":
        base = [random_graph(rng) for _ in range(4)]
        for i in range(n):
            yield run_graph, mutate_graph(base[i % len(base)], rng), f"networkx #{i}"
    elif kind == "pcz":
        base = [saved_model(tmp, rng) for _ in range(3)]
        for i in range(n):
            yield run_pcz, tamper(base[i % len(base)], rng), f"pcz #{i}"
    else:
        base = [saved_model(tmp, rng) for _ in range(2)]
        for i in range(n):
            yield run_cli, cli_case(rng, base), f"cli #{i}"


def run_cases(kind: str, n: int, seed: int, tmp: Path) -> tuple[Counter, list[Outcome]]:
    os.environ.setdefault("PCC_MEMORY_LIMIT", MEMORY_LIMIT)
    counts, bad = Counter(), []
    for fn, case, label in cases(kind, n, seed, tmp):
        out = run_one(fn, case, tmp, label)
        counts[out.kind] += 1
        if out.kind not in ("ok", "pcerror"):
            out.detail += (
                f"\n    input: {case!r}"[:600]
                if not isinstance(case, nx.DiGraph)
                else f"\n    graph: {dict(case.nodes(data=True))!r}"[:600]
            )
            bad.append(out)
    return counts, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=300, help="cases per kind")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="dsl,networkx,pcz,cli,options,meta,env")
    args = ap.parse_args(argv)
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    total_bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            t0 = time.perf_counter()
            counts, bad = run_cases(kind, args.fuzz, args.seed, Path(tmp))
            total_bad += len(bad)
            print(f"{kind:9s} {args.fuzz:6d} cases in {time.perf_counter() - t0:6.1f} s: {dict(counts)}", flush=True)
            for o in bad[:20]:
                print(f"  {o.case}: {o.kind}: {o.detail}")
    print(f"other outcomes: {total_bad}")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
