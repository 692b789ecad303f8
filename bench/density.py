"""Density estimation on the 20 binary DEBD datasets: HCLTs trained with `pcc train`, against
the published HCLT figures (../shared/anchors-debd.md).

    python bench/density.py --all                      # every dataset, resumable, one at a time
    python bench/density.py --datasets nltcs plants    # some of them
    python bench/density.py --all --device cuda        # the full budget on a GPU
    python bench/density.py --table                    # only rebuild the table from results

Each dataset gets `WORK/NAME.pc` (a mixture of HCLTs over its training data) and the exact
`pcc train` command below; its result (test LL at the epoch of best validation LL, read from
the checkpoint's history) lands in `WORK/NAME.json`, and a dataset with a result is skipped,
so a killed run continues where it stopped (an unfinished dataset resumes from its checkpoint).
`--minutes M` caps each dataset's mini-batch epochs to what M minutes allow on this machine,
measured on the first epochs; the table says which datasets ran capped. The table is written
into bench/README.md between the `density-table` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pccompile.io import read

# dataset: (variables, A: the official code of the regularisation paper, B: PyJuice HCLT-100),
# from ../shared/anchors-debd.md (its sources and caveats); the bar is the better of the two.
PUBLISHED = {
    "nltcs": (16, -6.00, -6.00),
    "msnbc": (17, -6.06, -6.12),
    "kdd": (64, -2.18, -2.22),
    "plants": (69, -14.26, -12.68),
    "baudio": (100, -39.77, -39.62),
    "jester": (100, -52.46, -52.82),
    "bnetflix": (100, -56.28, -56.22),
    "accidents": (111, -26.74, -26.64),
    "tretail": (135, -10.87, -10.84),
    "pumsb_star": (163, -23.65, -22.78),
    "dna": (180, -79.06, -87.78),
    "kosarek": (190, -10.67, -10.59),
    "msweb": (294, -9.99, -9.73),
    "book": (500, -33.83, -34.34),
    "tmovie": (500, -50.82, -42.16),
    "cwebkb": (839, -152.77, -154.71),
    "cr52": (889, -84.6, -99.09),
    "c20ng": (910, -151.7, -151.99),
    "bbc": (1058, -251.05, -269.58),
    "ad": (1556, -16.07, -18.40),
}


# The configuration of the paper's official code ("non-deterministic PCs/main.jl"): a mixture of
# 4 HCLTs (picked from 20 candidate trees), 12 latents, pseudocount 0.1, softening 0.002,
# entropy 0.001, batch 1024, mini-batch EM with the step ramped 0.9 -> 0.1 (its update factor
# 0.1 -> 0.9 is the weight of the old parameters), then full-batch EM, patience 3 per phase.
CONFIG = {
    "trees": 4,
    "latents": 12,
    "epochs": 100,
    "finish": 100,
    "batch": 1024,
    "step": 0.9,
    "step_end": 0.1,
    "pseudocount": 0.1,
    "soften": 0.002,
    "entropy": 0.001,
    "patience": 3,
}


def spec_text(name: str, train: Path, cfg: dict) -> str:
    V = PUBLISHED[name][0]
    return (
        f"# mixture of {cfg['trees']} HCLTs for {name}\nvar x[{V}] : binary\n"
        f'name = "{name}-hclt{cfg["latents"]}x{cfg["trees"]}"\n'
        f'root = hclt(x, latents={cfg["latents"]}, trees={cfg["trees"]}, data="{train.resolve()}")\n'
    )


def command(name: str, root: Path, work: Path, cfg: dict, epochs: int, finish: int, device: str) -> list[str]:
    d = root / name
    files = {s: d / f"{name}.{s}.data.gz" for s in ("train", "valid", "test")}
    return [
        "pcc", "train", str(work / f"{name}.pc"),
        "--data", str(files["train"]), "--valid", str(files["valid"]), "--test", str(files["test"]),
        "--epochs", str(epochs), "--finish", str(finish), "--patience", str(cfg["patience"]),
        "-b", str(cfg["batch"]), "--step-size", str(cfg["step"]), "--step-size-end", str(cfg["step_end"]),
        "--schedule", "linear", "--pseudocount", str(cfg["pseudocount"]),
        "--soften", str(cfg["soften"]), "--entropy-reg", str(cfg["entropy"]),
        "--device", device, "-o", str(work / f"{name}.pcz"), "--samples", "0",
    ]  # fmt: skip


def _pcc(cmd: list[str], log: Path) -> None:
    """Run a pcc command with this interpreter (so a frozen checkout's own code runs)."""
    with open(log, "a") as f:
        subprocess.run([sys.executable, "-m", "pccompile.cli", *cmd[1:]], check=True, stdout=f, stderr=f)


def epoch_seconds(name: str, root: Path, cfg: dict, device: str) -> float:
    """Seconds per training epoch of this dataset's circuit, timed on a few batches (with the
    evaluation of valid and test data an epoch also does)."""
    import torch

    import pccompile as pc
    from pccompile.io.data import load_array
    from pccompile.learn.em import em_step
    from pccompile.learn.regularize import Regularization

    d = root / name
    train = load_array(d / f"{name}.train.data.gz")
    model = pc.compile(pc.parse(spec_text(name, d / f"{name}.train.data.gz", cfg)), device=device)
    reg = Regularization.from_data(cfg["soften"], cfg["entropy"], train, model.program.var_cats)
    x_int, _ = model.encode(train[: cfg["batch"]])
    em_step(model, x_int, None, 0.5, cfg["pseudocount"], reg=reg)  # warm-up
    t0, steps = time.perf_counter(), 3
    for _ in range(steps):
        em_step(model, x_int, None, 0.5, cfg["pseudocount"], reg=reg)
    with torch.no_grad():
        model(train[: cfg["batch"]])
    step = (time.perf_counter() - t0) / (steps + 0.4)
    rows = len(train) * (1 + 0.4 * 0.25)  # valid + test are about a quarter of train, forward only
    return step * rows / cfg["batch"]


def run(name: str, root: Path, work: Path, cfg: dict, minutes: float | None, device: str) -> dict:
    train = root / name / f"{name}.train.data.gz"
    (work / f"{name}.pc").write_text(spec_text(name, train, cfg))
    epochs, finish, capped = cfg["epochs"], cfg["finish"], False
    if minutes is not None:  # both phases share the budget, 3 mini-batch epochs to 1 full-batch
        fit = int(minutes * 60 / epoch_seconds(name, root, cfg, device))
        if fit < epochs + finish:
            epochs, finish, capped = max(4, min(epochs, 3 * fit // 4)), max(1, min(finish, fit // 4)), True
    cmd = command(name, root, work, cfg, epochs, finish, device)
    ckpt = work / f"{name}.ckpt.pcz"
    t0 = time.perf_counter()
    _pcc(cmd + (["--resume"] if ckpt.exists() else []), work / f"{name}.log")
    seconds = time.perf_counter() - t0
    record, _ = read(ckpt)
    hist = record["extra"]["train_state"]["history"]
    best = max(hist, key=lambda r: r["valid_ll"])
    return {
        "dataset": name,
        "vars": PUBLISHED[name][0],
        "epochs_run": len(hist),
        "epochs_budget": epochs,
        "finish_budget": finish,
        "capped": capped,
        "best_epoch": best["epoch"],
        "valid_ll": best["valid_ll"],
        "test_ll": best["test_ll"],
        "seconds": round(seconds, 1),
        "config": f"{cfg['latents']}x{cfg['trees']}, patience {cfg['patience']}",
        "command": shlex.join(cmd),
    }


RESULTS = [Path(__file__).with_name(f) for f in ("results_density20.jsonl", "results_density_full.jsonl")]
"""The committed results the table is built from, beside any work folder's: a table rebuilt from
one run's folder alone would drop every dataset that run did not train."""


def _better(r: dict, old: dict | None) -> bool:
    """Higher validation LL wins; at a tie, a run with the full budget over a capped one."""
    if old is None:
        return True
    return (r["valid_ll"], not r.get("capped", False)) > (old["valid_ll"], not old.get("capped", False))


def best_results(works: list[Path]) -> dict[str, dict]:
    """Per dataset, the result of best validation LL over the committed results and the work
    folders (configurations)."""
    rows = []
    for f in RESULTS:
        if f.exists():
            rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    for work in works:
        rows += [json.loads((work / f"{n}.json").read_text()) for n in PUBLISHED if (work / f"{n}.json").exists()]
    best: dict[str, dict] = {}
    for r in rows:
        name = r.get("dataset", r.get("name"))
        if name in PUBLISHED and "epochs_run" in r and _better(r, best.get(name)):
            best[name] = r
    return best


def table(works: list[Path]) -> str:
    results = best_results(works)
    lines = [
        "| dataset | vars | ours: test LL | published A | published B | gap to the better | valid LL "
        "| config (latents x trees) | epochs run (budget) | budget | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for name, (V, a, b) in PUBLISHED.items():
        bar = max(a, b)
        if name not in results:
            lines.append(f"| {name} | {V} | not run | {a:.2f} | {b:.2f} | | | | | | |")
            continue
        r = results[name]
        gap = r["test_ll"] - bar
        mark = "**" if gap >= 0 else ""
        budget = "capped (CPU)" if r["capped"] else "full"
        lines.append(
            f"| {name} | {V} | {mark}{r['test_ll']:.2f}{mark} | {a:.2f} | {b:.2f} "
            f"| {gap:+.2f} ({100 * gap / abs(bar):+.1f}%) | {r['valid_ll']:.2f} | {r.get('config', '12x4, patience 3')} "
            f"| {r['epochs_run']} ({r['epochs_budget']}+{r['finish_budget']}) | {budget} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def write_readme(text: str, readme: Path = Path(__file__).with_name("README.md")) -> None:
    src = readme.read_text()
    start, end = "<!-- density-table -->", "<!-- /density-table -->"
    if start not in src:
        return
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", src))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/twenty_datasets"))
    ap.add_argument("--work", type=Path, default=Path("runs/density"))
    ap.add_argument("--all", action="store_true", help="every one of the 20 datasets, smallest first")
    ap.add_argument("--datasets", nargs="+", default=[], choices=list(PUBLISHED))
    ap.add_argument("--minutes", type=float, default=None, help="cap each dataset's epochs to about this time")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", action="store_true", help="only rebuild the table from the results")
    ap.add_argument("--also", type=Path, nargs="*", default=[], help="more result folders (other configurations)")
    for key in ("latents", "trees", "patience"):
        ap.add_argument(f"--{key}", type=int, default=CONFIG[key], help=f"default {CONFIG[key]}")
    args = ap.parse_args()
    cfg = {**CONFIG, "latents": args.latents, "trees": args.trees, "patience": args.patience}
    args.work.mkdir(parents=True, exist_ok=True)
    works = [args.work, *args.also]
    names = list(PUBLISHED) if args.all else args.datasets
    for name in [] if args.table else names:
        out = args.work / f"{name}.json"
        if out.exists():
            continue
        r = run(name, args.data, args.work, cfg, args.minutes, args.device)
        out.write_text(json.dumps(r, indent=1))
        print(json.dumps(r), flush=True)
        write_readme(table(works))
    text = table(works)
    write_readme(text)
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
