"""pccompile vs PyJuice 2.6.3, side by side on one GPU, in one run.

HCLT over 784 categorical(256) variables, batch 512, on (a) MNIST at latents 32/128/256/512
(real images; the Chow-Liu tree is learned from them), then (b) at latents 32/256 a chain-like tree (synthetic smoothed
random walks, whose Chow-Liu tree is a chain: the deepest case). Per row: forward ms, train step
ms (forward + backward + mini-batch EM), compile s, peak GPU memory; medians of --steps timed
steps after warm-up, CUDA events. Also the roofline floor from the measured bf16 matmul rate and
device copy rate.

On the GPU machine (PyJuice's wheel carried in .whl, MNIST copied into bench/data):
    python3 -m pip install -q --no-deps --target /tmp/site .whl/pyjuice-2.6.3-*.whl
    PYTHONPATH=/tmp/site:. python3 bench/vs_pyjuice.py --mnist bench/data/train-images-idx3-ubyte.gz --out $OUT
A CPU smoke run of our side only: python bench/vs_pyjuice.py --device cpu --vars 16 --cats 4 --latents 4 --batch 8
Each row is appended to OUT/vs_pyjuice.jsonl as soon as it is measured; `--table FILE` prints the
table of such a file (of a run cut short, too).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def chain_data(n: int, V: int, K: int, seed: int = 0) -> np.ndarray:
    """Smoothed random walks: neighbouring pixels close, so the Chow-Liu tree is a chain."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, K / 16, size=(n, V))
    walk = np.cumsum(steps, axis=1) + rng.uniform(0, K, size=(n, 1))
    return np.mod(np.round(walk), K).astype(np.int64)


def mnist(path: str, n: int) -> np.ndarray:
    raw = gzip.open(path).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)[:n].astype(np.int64)


def timed(fn, steps: int, device) -> float:
    """Median milliseconds of `fn` over `steps` runs (CUDA events; host clock on CPU)."""
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def floors(device) -> dict:
    if device.type != "cuda":
        return {}
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    ms = timed(lambda: a @ b, 10, device)
    x = torch.randn(1 << 28, device=device)
    y = torch.empty_like(x)
    cms = timed(lambda: y.copy_(x), 10, device)
    return {"matmul_tflops": 2 * 8192**3 / ms / 1e9, "copy_tbps": 2 * x.numel() * 4 / cms / 1e9}


def rows_written(model) -> int:
    """Rows of `mars` the forward pass writes (fused product rows never reach memory)."""
    n = model.program.num_rows
    emitted = getattr(model.executor, "emitted", None)
    if emitted is not None:
        n -= sum(L.meta["M"] for L in emitted.launches if L.kind == "prod" and L.meta["fused_away"])
    return n


def ours(
    x: np.ndarray,
    parent,
    latents: int,
    K: int,
    batch: int,
    steps: int,
    device,
    backend: str,
    triton: dict | None = None,
) -> dict:
    import pccompile as pc
    from pccompile.learn import em_step
    from pccompile.structures import hclt_from_tree

    torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else None
    t0 = time.perf_counter()
    model = pc.compile(pc.build(hclt_from_tree(parent, K, latents)), device=device, backend=backend, triton=triton)
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    xb = torch.as_tensor(x[:batch], device=device)
    x_int, x_real = model.encode(xb)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.log_prob_encoded(x_int, x_real)  # first call: Triton JIT (and graph capture)
    if device.type == "cuda":
        torch.cuda.synchronize()
    first_s = time.perf_counter() - t0

    def fwd():
        with torch.no_grad():
            model.log_prob_encoded(x_int, x_real)

    def step():
        em_step(model, x_int, x_real, 0.1, 0.1)

    out = {
        "system": "pccompile",
        "backend": model.backend + (f" {triton}" if triton else ""),
        "compile_s": compile_s,
        "first_call_s": first_s,
        "sum_params": int(model.program.num_sum_params),
        "rows": rows_written(model),
    }
    for graphs in [True, False] if model.cuda_graphs and device.type == "cuda" else [False]:
        model.cuda_graphs = graphs
        tag = "" if graphs else "_eager"
        try:
            for _ in range(3):
                fwd()
                step()
            out["fwd_ms" + tag] = timed(fwd, steps, device)
            out["step_ms" + tag] = timed(step, steps, device)
        except Exception as e:  # a failed capture must not lose the eager figures
            out["error" + tag] = repr(e)[:300]
            print(json.dumps({"graphs": graphs, "error": repr(e)[:300]}), flush=True)
    if "fwd_ms" not in out:
        if "fwd_ms_eager" not in out:
            raise RuntimeError(out.get("error_eager") or out.get("error") or "no timing")
        out["fwd_ms"], out["step_ms"] = out["fwd_ms_eager"], out["step_ms_eager"]
    out["peak_gb"] = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return out


def pyjuice(x: np.ndarray, latents: int, K: int, batch: int, steps: int, device) -> dict:
    import pyjuice as juice

    torch.cuda.reset_peak_memory_stats()
    xt = torch.as_tensor(x, device=device)
    t0 = time.perf_counter()
    pc = juice.compile(juice.structures.HCLT(xt.float(), num_latents=latents, input_node_params={"num_cats": K}))
    pc.to(device)
    opt = juice.optim.MiniBatchEM(pc, step_size=0.1, pseudocount=0.1)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    xb = xt[:batch]
    t0 = time.perf_counter()
    pc(xb, record_cudagraph=True, apply_cudagraph=True)
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0

    def fwd():
        with torch.no_grad():
            pc(xb, record_cudagraph=True, apply_cudagraph=True)

    def step():
        lls = pc(xb, record_cudagraph=True, apply_cudagraph=True)
        lls.mean().backward()
        opt.step()

    for _ in range(3):
        fwd()
        step()
    return {
        "system": "pyjuice",
        "backend": "pyjuice 2.6.3",
        "fwd_ms": timed(fwd, steps, device),
        "step_ms": timed(step, steps, device),
        "compile_s": compile_s,
        "first_call_s": first_s,
        "sum_params": None,
        "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


def add_floor(r: dict, fl: dict, batch: int) -> None:
    """Roofline: the slower of the matmuls and the traffic (rows written and read, weights)."""
    if fl and r.get("sum_params"):
        flops = 2.0 * r["sum_params"] * batch
        traffic = 4.0 * (2 * r["rows"] * batch + r["sum_params"])
        r["floor_flops_ms"] = flops / (fl["matmul_tflops"] * 1e12) * 1e3
        r["floor_bytes_ms"] = traffic / (fl["copy_tbps"] * 1e12) * 1e3
        r["floor_fwd_ms"] = max(r["floor_flops_ms"], r["floor_bytes_ms"])


def table(rows: list[dict]) -> str:
    """The markdown table of bench/README.md, with each system's ratio to PyJuice's train step."""
    pj = {(r["structure"], r["latents"]): r for r in rows if r.get("system") == "pyjuice" and "error" not in r}
    lines = [
        "| structure | latents | system | fwd ms | step ms | fwd / step ms, no graph | compile s "
        "(incl. tree learning) | first call s | peak GB | floor fwd ms | PyJuice step / ours |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['structure']} | {r['latents']} | {r['system']} | error: {r['error'][:60]} |" + " |" * 7)
            continue
        pk = "" if r.get("peak_gb") is None else f"{r['peak_gb']:.2f}"
        fl_ms = f"{r['floor_fwd_ms']:.3f}" if "floor_fwd_ms" in r else ""
        eager = f"{r['fwd_ms_eager']:.2f} / {r['step_ms_eager']:.2f}" if "fwd_ms_eager" in r else ""
        comp = f"{r['compile_s']:.2f}" + (f" ({r['compile_s'] + r['structure_s']:.2f})" if "structure_s" in r else "")
        ref = pj.get((r["structure"], r["latents"]))
        ratio = f"{ref['step_ms'] / r['step_ms']:.2f}×" if ref and r["system"] != "pyjuice" else ""
        lines.append(
            f"| {r['structure']} | {r['latents']} | {r['system']} ({r['backend']}) | {r['fwd_ms']:.2f} | "
            f"{r['step_ms']:.2f} | {eager} | {comp} | {r['first_call_s']:.2f} | {pk} | {fl_ms} | {ratio} |"
        )
    return "\n".join(lines)


def load_data(args) -> dict[str, tuple[np.ndarray, list[int]]]:
    """{structure: (rows, the latent sizes to run it at)}, in the order they run."""
    datasets = {}
    if args.mnist and "mnist" in args.structures:
        x = mnist(args.mnist, 10000)
        if args.vars < x.shape[1] or args.cats < 256:  # a smoke run: evenly spaced pixels, fewer levels
            cols = np.linspace(0, x.shape[1] - 1, args.vars).round().astype(int)
            x = x[:, cols] // (256 // args.cats)
        datasets["mnist"] = (x, args.latents)
    if "chain" in args.structures:
        datasets["chain"] = (chain_data(max(args.batch, 2000), args.vars, args.cats), args.chain_latents)
    return datasets


def run_structure(name, x, latents, args, device, fl, emit) -> None:
    """Every system at every latent size on one structure; each row goes to `emit` at once."""
    from pccompile.structures import chow_liu_tree

    K = args.cats
    t0 = time.perf_counter()  # structure learning, which PyJuice's HCLT() also does inside its compile time
    xs = x // max(1, K // 16)
    _, parent = chow_liu_tree(xs, -(-K // max(1, K // 16)), max_rows=5000)
    structure_s = time.perf_counter() - t0
    for L in latents:
        systems = [
            lambda t=t: ours(x, parent, L, K, args.batch, args.steps, device, args.backend, t)
            for t in (args.triton or [None])
        ]
        if not args.no_pyjuice and device.type == "cuda":
            systems.append(lambda: pyjuice(x, L, K, args.batch, args.steps, device))
        for run in systems:
            try:
                r = run()
            except Exception as e:  # a failing system is reported, the table goes on
                r = {"system": "?", "error": repr(e)[:300]}
            r.update(structure=name, latents=L)
            if r.get("system") == "pccompile":
                r["structure_s"] = structure_s  # Chow-Liu tree (MI on the GPU when there is one)
            add_floor(r, fl, args.batch)
            emit(r)
            torch.cuda.empty_cache() if device.type == "cuda" else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", help="train-images-idx3-ubyte.gz (structure (a)); omitted: chain only")
    ap.add_argument("--latents", type=int, nargs="+", default=[32, 128, 256, 512], help="on MNIST")
    ap.add_argument("--chain-latents", type=int, nargs="+", default=[32, 256], help="on the chain tree")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--vars", type=int, default=784)
    ap.add_argument("--cats", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--no-pyjuice", action="store_true")
    ap.add_argument(
        "--triton",
        type=json.loads,
        action="append",
        default=None,
        metavar="JSON",
        help="Triton options for our side, e.g. '{\"block_b\": 32}' (repeat to compare several)",
    )
    ap.add_argument("--structures", nargs="+", default=["mnist", "chain"], help="which of mnist, chain")
    ap.add_argument("--out", default=".", help="folder of vs_pyjuice.jsonl, a row appended as each is measured")
    ap.add_argument("--table", metavar="JSONL", help="only print the table of a vs_pyjuice.jsonl and exit")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]
        print(table([r for r in rows if "floors" not in r]))
        return 0
    device = torch.device(args.device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jsonl = Path(args.out) / "vs_pyjuice.jsonl"
    jsonl.unlink(missing_ok=True)
    rows = []

    def emit(r: dict) -> None:
        with jsonl.open("a") as f:  # at once: a run cut short keeps every row it measured
            f.write(json.dumps(r) + "\n")
        print(json.dumps(r), flush=True)
        if "floors" not in r:
            rows.append(r)

    fl = floors(device)
    emit({"floors": fl})
    for name, (x, latents) in load_data(args).items():
        run_structure(name, x, latents, args, device, fl, emit)
    print("\n" + table(rows))


if __name__ == "__main__":
    sys.exit(main())
