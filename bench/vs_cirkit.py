"""pccompile beside cirkit on the CPU: the same circuits, time and peak memory per operation.

Each circuit is built once, by cirkit's own region graphs and layer templates (HCLT: Chow-Liu
tree over plants with CP layers; RAT-SPN: random binary trees over plants with Tucker layers;
PD: Poon-Domingos over the 8x8 digits with CP-transposed layers; MNIST: Chow-Liu tree of 5,000
images in 16 bins over the 784 pixels as categorical(256), CP layers), with seeded parameters. The
symbolic circuit is then translated layer by layer into pccompile's builder, so both libraries
run exactly the same circuit with the same parameters; the script checks that their
log-likelihoods agree before it times anything. cirkit compiles with its default pipeline
(folding and layer fusion).

Operations, batch 512: forward (no gradient), an Adam step (forward, backward, update; softmax
logits in both) and an EM step (pccompile: `em_step`; cirkit: forward, backward and its own
sum-layer EM update applied to every parameter, since its fused Tucker layers have no EM step of
their own). Timings are medians of interleaved repeats, each training step from the same
parameters (restored, untimed, before every call). Peak memory is the rise of the resident set
(VmHWM after a reset) over the first two calls after the build, above the resident set before
them, one fresh process per library and operation, with glibc's mmap threshold fixed so that
freed tensors leave the resident set: what a library allocates once and keeps (Adam's moments,
kept buffers) counts.

cirkit lives in its own venv, for this benchmark only (never a project dependency):

    python3 -m venv /tmp/cirkit && /tmp/cirkit/bin/pip install torch==2.13.0 libcirkit -e .
    /tmp/cirkit/bin/python bench/vs_cirkit.py --readme bench/README.md

Each (structure, size) runs in fresh processes (`--one STRUCTURE SIZE --what time`, and
`--what memory --lib L --op O`, print one JSON row).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = {"hclt": [16, 32, 64, 128], "rat_spn": [8, 16, 32, 64], "pd": [8, 16, 32, 64], "mnist": [16, 32, 64]}
RAT_DEPTH, RAT_REPETITIONS, PD_DELTA = 3, 4, 2
OPS = ("forward", "adam", "em")
LIBS = ("ours", "cirkit")
# pccompile as `auto` runs it on the CPU (the CPU target), its torch backend, and the torch
# backend with parts of its CPU work switched off, for the ablation rows
VARIANTS = {
    "default": {"fuse": True, "chunk": None, "backend": "auto"},
    "torch": {"fuse": True, "chunk": None, "backend": "torch"},
    "unchunked": {"fuse": True, "chunk": 1 << 62, "backend": "torch"},  # fused, each sum partition in one piece
    "unfused": {"fuse": False, "chunk": None, "backend": "torch"},  # products stored as rows, as before fusion
}
MARKERS = ("<!-- vs-cirkit-table -->", "<!-- /vs-cirkit-table -->")


# -- data and the symbolic circuits ------------------------------------------------------------
def dataset(structure: str, data_root: Path) -> tuple[np.ndarray, int]:
    """(training rows [N, V], categories): plants for HCLT and RAT-SPN, the digits for PD,
    MNIST's training images (pixels as categorical(256)) for the MNIST HCLT."""
    if structure == "mnist":
        images = data_root.parent / "mnist" / "train-images-idx3-ubyte.gz"
        return np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 784).astype(np.int64), 256
    if structure == "pd":
        from pccompile.io.data import load_array

        return load_array("builtin:digits").astype(np.int64), 17
    path = data_root / "plants" / "plants.train.data.gz"
    return np.loadtxt(path, delimiter=",", dtype=np.int64), 2


class SeededParameters:
    """A cirkit parameter factory drawing N(0, 1) logits from one seeded stream, and recording
    each parameter's normalised values so pccompile can be given the same ones. `direct`:
    the parameter holds the probabilities themselves (what cirkit's EM update needs), otherwise
    logits under a softmax (what gradient training uses)."""

    def __init__(self, seed: int, direct: bool):
        self.rng, self.direct, self.values = np.random.default_rng(seed), direct, {}

    def __call__(self, shape):
        from cirkit.symbolic.initializers import ConstantTensorInitializer
        from cirkit.symbolic.parameters import Parameter, SoftmaxParameter, TensorParameter

        logits = self.rng.normal(size=shape).astype(np.float32)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        if self.direct:
            p = Parameter.from_input(TensorParameter(*shape, initializer=ConstantTensorInitializer(probs)))
        else:
            tensor = TensorParameter(*shape, initializer=ConstantTensorInitializer(logits))
            p = Parameter.from_unary(SoftmaxParameter(shape, axis=-1), tensor)
        self.values[id(p)] = probs
        return p


def mnist_region_graph(x: np.ndarray):
    """cirkit's Chow-Liu region graph of 5,000 MNIST images in 16 bins (as bench/mnist.py learns
    its tree), kept in a temporary file: it takes about a minute, and every fresh process of
    this script needs it. Chunked: cirkit's pairwise counts over 784 variables need more than
    24 GB at once otherwise."""
    from cirkit.templates.region_graph import ChowLiuTree

    cache = Path(tempfile.gettempdir()) / "pccompile-vs-cirkit-mnist-region-graph.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    rows = torch.as_tensor(x[:5000] // 16)
    rg = ChowLiuTree(data=rows, input_type="categorical", num_categories=16, as_region_graph=True, chunk_size=64)
    cache.write_bytes(pickle.dumps(rg))
    return rg


def unclamp_cirkit() -> None:
    """cirkit's log-space semiring clamps every log-value at ln(DBL_MIN) = -708.40, so an image's
    log-likelihood under categorical(256) pixels (about -4,400 with random parameters) comes out
    as -708.40 for every image. The benchmark lowers that floor: the same operations run, so
    the cost is unchanged, and the two libraries' values can be checked against each other."""
    import cirkit.backend.torch.semiring as semiring
    import cirkit.backend.torch.utils as utils

    semiring.LOG_CLAMP_MIN = utils.LOG_CLAMP_MIN = -3.0e38


def symbolic_circuit(structure: str, x: np.ndarray, cats: int, K: int, seed: int, direct: bool):
    """cirkit's symbolic circuit of one structure and size, and its parameter values."""
    from cirkit.symbolic.layers import CategoricalLayer
    from cirkit.templates.region_graph import ChowLiuTree, PoonDomingos, RandomBinaryTree

    if structure == "hclt":
        rg = ChowLiuTree(data=torch.as_tensor(x), input_type="categorical", num_categories=cats, as_region_graph=True)
        sum_product = "cp"
    elif structure == "mnist":
        rg, sum_product = mnist_region_graph(x), "cp"
    elif structure == "rat_spn":
        rg = RandomBinaryTree(x.shape[1], depth=RAT_DEPTH, num_repetitions=RAT_REPETITIONS, seed=seed)
        sum_product = "tucker"
    else:
        side = int(round(x.shape[1] ** 0.5))
        rg, sum_product = PoonDomingos((1, side, side), delta=PD_DELTA), "cp-t"
    params = SeededParameters(seed, direct)
    sc = rg.build_circuit(
        input_factory=lambda scope, n: CategoricalLayer(scope, n, num_categories=cats, probs=params((n, cats))),
        sum_product=sum_product,
        sum_weight_factory=params,
        num_input_units=K,
        num_sum_units=K,
        num_classes=1,
    )
    return sc, params.values


def to_pccompile(sc, values: dict):
    """The same circuit in pccompile's builder: one node vector per cirkit layer."""
    from cirkit.symbolic.layers import CategoricalLayer, HadamardLayer, KroneckerLayer, SumLayer
    from pccompile.ir import Categorical

    from pccompile import builder

    vec = {}
    for layer in sc.topological_ordering():
        ins = [vec[id(c)] for c in sc.layer_inputs(layer)]
        if isinstance(layer, CategoricalLayer):
            (v,) = tuple(layer.scope)
            dist = Categorical(layer.num_categories)
            out = builder.inputs(int(v), layer.num_output_units, dist, probs=values[id(layer.probs)])
        elif isinstance(layer, SumLayer):  # dense over the concatenated inputs
            out = builder.summate(*ins, size=layer.num_output_units, weights=values[id(layer.weight)])
        elif isinstance(layer, HadamardLayer):
            out = builder.multiply(*ins)
        elif isinstance(layer, KroneckerLayer):  # the first input's index varies slowest, as in cirkit
            index = np.indices([c.size for c in ins]).reshape(len(ins), -1)
            out = builder.multiply(*ins, index=tuple(index))
        else:
            raise TypeError(f"no translation for cirkit's {type(layer).__name__}")
        vec[id(layer)] = out
    (root,) = sc.outputs
    return vec[id(root)]


def cirkit_em_update(cc, step: float, pseudocount: float) -> None:
    """cirkit's sum-layer EM update (TorchSumLayer.em_step), on every parameter: expected counts
    are probabilities times the gradient of the summed log-likelihood."""
    with torch.no_grad():
        for p in cc.parameters():
            counts = p * p.grad.clamp(0.0)
            target = (counts + pseudocount / p.shape[-1]) / (counts.sum(-1, keepdim=True) + pseudocount)
            p.lerp_(target, step)


# -- measuring ---------------------------------------------------------------------------------
def _status_mb(key: str) -> float:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def peak_mb(fn, calls: int = 2) -> float:
    """The rise of the resident set's high-water mark over `calls` calls of fn, above the
    resident set before the first: one-time allocations (Adam's moments, buffers a library
    keeps between calls) count."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    base = _status_mb("VmRSS")
    for _ in range(calls):
        fn()
    return _status_mb("VmHWM") - base


def interleaved_medians(fns: dict, repeats: int, seconds: float = 2.0) -> dict:
    """Median seconds per call of each (fn, reset) (reset, if any, runs untimed before each
    call), the libraries taking turns so drift hits both alike; at least `repeats` rounds, more
    for fast calls (about `seconds` of calls per library, at most 200)."""
    times = {k: [] for k in fns}
    slowest = 0.0
    for fn, reset in fns.values():  # warm-up, and a first estimate of the call's time
        fn()
        reset and reset()
        t = time.perf_counter()
        fn()
        slowest = max(slowest, time.perf_counter() - t)
    rounds = int(min(200, max(repeats, seconds / max(slowest, 1e-6))))
    for _ in range(rounds):
        for k, (fn, reset) in fns.items():
            reset and reset()
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def snapshot(module):
    """A function restoring the module's parameters to their current values: repeated training
    steps on one batch would drive them to degenerate values that no real run times."""
    saved = [p.detach().clone() for p in module.parameters()]

    def restore():
        with torch.no_grad():
            for p, v in zip(module.parameters(), saved):
                p.copy_(v)

    return restore


def build(structure: str, K: int, args, libs=("ours", "cirkit")) -> dict:
    """The batch and the compiled circuits of both libraries (or of one, for a memory run),
    with build times; the first build of each library loads its modules and is not timed."""
    from cirkit.pipeline import compile as cirkit_compile
    from pccompile.ir import Domain, Variable

    import pccompile as pc

    torch.manual_seed(args.seed)
    if structure == "mnist":
        unclamp_cirkit()
    x, cats = dataset(structure, args.data)
    rows = np.random.default_rng(args.seed).choice(len(x), args.batch, replace=len(x) < args.batch)
    out = {"xb": torch.as_tensor(x[rows])}
    sc_soft, values = symbolic_circuit(structure, x, cats, K, args.seed, direct=False)
    sc_direct, values_direct = symbolic_circuit(structure, x, cats, K, args.seed, direct=True)
    variables = [Variable(f"x{i}", Domain(cats)) for i in range(x.shape[1])]
    variant = VARIANTS[args.variant]
    if variant["chunk"] is not None:
        from pccompile.codegen.torch_backend import executor

        executor.PIECE_BUDGET = variant["chunk"]
    options = {"backend": variant["backend"]} | ({} if variant["fuse"] else {"fuse": False})
    if "cirkit" in libs:
        out["cc_em"] = cirkit_compile(sc_direct)
    if "ours" in libs:
        pc.compile(pc.build(to_pccompile(sc_direct, values_direct), variables), **options)
    if "cirkit" in libs:
        t = time.perf_counter()
        out["cc"] = cirkit_compile(sc_soft)
        out["build_s_cirkit"] = time.perf_counter() - t
    if "ours" in libs:
        root = to_pccompile(sc_soft, values)
        t = time.perf_counter()
        out["model"] = pc.compile(pc.build(root, variables), **options)
        out["build_s_ours"] = time.perf_counter() - t
    return out


def check_agreement(b: dict, structure: str, K: int) -> tuple[float, int]:
    """(max |log-likelihood difference|, parameters), or exit: nothing is timed unless both
    libraries compute the same function with the same parameter count."""
    model, xb = b["model"], b["xb"]
    with torch.no_grad():
        ll_ours = model(xb)
        ll_cirkit = b["cc"](xb).reshape(-1)
        ll_cirkit_em = b["cc_em"](xb).reshape(-1)
    agree = max(float((ll_ours - ll_cirkit).abs().max()), float((ll_ours - ll_cirkit_em).abs().max()))
    n_ours, n_cirkit = int(model.circuit.stats()["parameters"]), sum(p.numel() for p in b["cc"].parameters())
    if agree > 1e-3 * float(ll_cirkit.abs().max()) or n_ours != n_cirkit:
        raise SystemExit(
            f"{structure} K={K}: the libraries disagree (|dLL| {agree:.2e}, params {n_ours} vs {n_cirkit})"
        )
    return agree, n_ours


def operations(b: dict) -> dict:
    """{op: {library: (call, reset or None)}} for the libraries built in b."""
    from pccompile.learn import em_step

    xb, ops = b["xb"], {op: {} for op in OPS}

    def adam(ll, module):
        opt = torch.optim.Adam(module.parameters(), lr=0.1)

        def step():
            opt.zero_grad()
            (-ll(xb).mean()).backward()
            opt.step()

        return step, snapshot(module)

    if "model" in b:
        model = b["model"]
        x_int, x_real = model.encode(xb)
        ops["forward"]["ours"] = (torch.no_grad()(lambda: model(xb)), None)
        ops["adam"]["ours"] = adam(model, model)
        ops["em"]["ours"] = (lambda: em_step(model, x_int, x_real, 0.1, 0.1), snapshot(model))
    if "cc" in b:
        cc, cc_em = b["cc"], b["cc_em"]

        def em_cirkit():
            cc_em.zero_grad()
            cc_em(xb).sum().backward()
            cirkit_em_update(cc_em, 0.1, 0.1)

        ops["forward"]["cirkit"] = (torch.no_grad()(lambda: cc(xb)), None)
        ops["adam"]["cirkit"] = adam(lambda v: cc(v).reshape(-1), cc)
        ops["em"]["cirkit"] = (em_cirkit, snapshot(cc_em))
    return ops


def measure(structure: str, K: int, args) -> dict:
    """One JSON row: timings of both libraries (`--what time`), or the peak memory of one
    library's one operation in this fresh process (`--what memory --lib L --op O`)."""
    row = {"structure": structure, "K": K, "batch": args.batch, "variant": args.variant}
    if args.what == "memory":
        b = build(structure, K, args, libs=(args.lib,))
        fn, _ = operations(b)[args.op][args.lib]
        return row | {f"{args.op}_mb_{args.lib}": peak_mb(fn)}
    b = build(structure, K, args)
    agree, params = check_agreement(b, structure, K)
    row |= {"params": params, "max_abs_dll": agree, "threads": torch.get_num_threads()}
    row |= {"build_s_ours": b["build_s_ours"], "build_s_cirkit": b["build_s_cirkit"]}
    for op, fns in operations(b).items():
        med = interleaved_medians(fns, args.repeats)
        row |= {f"{op}_ms_ours": 1e3 * med["ours"], f"{op}_ms_cirkit": 1e3 * med["cirkit"]}
    return row


# -- the table ---------------------------------------------------------------------------------
NAMES = {
    "hclt": "HCLT (plants, CP)",
    "rat_spn": "RAT-SPN (plants, Tucker)",
    "pd": "PD (digits 8x8, CP-T)",
    "mnist": "HCLT (MNIST, categorical(256), CP)",
}


def table(rows: list[dict]) -> str:
    head = "| structure | K | parameters | " + " | ".join(f"{op} ours / cirkit ms (ratio)" for op in OPS)
    head += " | " + " | ".join(f"{op} MB ours / cirkit" for op in OPS) + " | build s ours / cirkit |"
    lines = [head, "|" + "---|" * 3 + "---:|" * (2 * len(OPS) + 1)]
    for r in rows:
        variant = r.get("variant", "default")
        name = NAMES[r["structure"]] + ("" if variant == "default" else f" [{variant}]")
        cells = [name, str(r["K"]), f"{r['params']:,}"]
        for op in OPS:
            a, b = r[f"{op}_ms_ours"], r[f"{op}_ms_cirkit"]
            cells.append(f"{a:.1f} / {b:.1f} (**{a / b:.2f}**)")
        cells += [f"{r[f'{op}_mb_ours']:.0f} / {r[f'{op}_mb_cirkit']:.0f}" for op in OPS]
        cells.append(f"{r['build_s_ours']:.2f} / {r['build_s_cirkit']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(path: Path, text: str) -> None:
    doc = path.read_text()
    start, end = MARKERS
    if start not in doc:
        raise SystemExit(f"{path} has no {start} ... {end} block to fill")
    head, rest = doc.split(start, 1)
    path.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/twenty_datasets")
    ap.add_argument("--structures", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--sizes", nargs="+", type=int, help="latent sizes (default: each structure's four)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=list(VARIANTS), default="default", help="pccompile with parts switched off")
    ap.add_argument("--out", type=Path, default=Path("bench/results_vs_cirkit.jsonl"))
    ap.add_argument("--readme", type=Path, help="write the table into this file between its markers")
    ap.add_argument("--one", nargs=2, metavar=("STRUCTURE", "K"), help=argparse.SUPPRESS)
    ap.add_argument("--what", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    ap.add_argument("--lib", choices=LIBS, help=argparse.SUPPRESS)
    ap.add_argument("--op", choices=OPS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args)), flush=True)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    # memory runs alone, with glibc's mmap threshold fixed so that freed tensors leave the
    # resident set (it would slow the timings: every large temporary a fresh mapping)
    memory_env = dict(env, MALLOC_MMAP_THRESHOLD_="131072")
    common = ["--data", str(args.data), "--batch", str(args.batch), "--repeats", str(args.repeats)]
    common += ["--threads", str(args.threads), "--seed", str(args.seed), "--variant", args.variant]
    rows = []
    for structure in args.structures:
        for K in args.sizes or SIZES[structure]:
            row = {}
            runs = [(["--what", "time"], env)]
            runs += [(["--what", "memory", "--lib", lib, "--op", op], memory_env) for op in OPS for lib in LIBS]
            for extra, run_env in runs:
                cmd = [sys.executable, __file__, *common, "--one", structure, str(K), *extra]
                out = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"{structure} K={K} ({' '.join(extra)}) failed:\n{out.stderr[-3000:]}")
                row |= json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    text = table(rows)
    print(text)
    if args.readme:
        write_readme(args.readme, text)


if __name__ == "__main__":
    main()
