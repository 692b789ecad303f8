"""Our HCLT (an h x h sum on every tree edge) against the released shape (no sum on a leaf:
`hclt(..., leaf_sums=0)`), trained alike, at equal latents: parameters, and validation and test
LL at the epoch of best validation LL. One JSON line per run.

    OMP_NUM_THREADS=1 python bench/hclt_shape.py --datasets digits nltcs dna --latents 16 32 --epochs 60 \\
        --data ../shared/data/twenty_datasets --out bench/results_hclt_shape.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pccompile.io import read


def _splits(name: str, data: Path) -> tuple[list[str], str]:
    """(train, valid, test) sources and the variables' declaration."""
    if name == "digits":
        return ["builtin:digits", "builtin:digits:valid", "builtin:digits:test"], "var x[64] : categorical(17)"
    files = [str(data / name / f"{name}.{s}.data.gz") for s in ("train", "valid", "test")]
    with open(files[2], "rb") as f:
        import gzip

        width = len(gzip.decompress(f.read()).split(b"\n", 1)[0].split(b","))
    return files, f"var x[{width}] : binary"


def run(name: str, latents: int, leaf_sums: int, args, work: Path) -> dict:
    (train, valid, test), decl = _splits(name, args.data)
    spec = work / f"{name}_h{latents}_l{leaf_sums}.pc"
    spec.write_text(f'{decl}\nroot = hclt(x, latents={latents}, data="{train}", leaf_sums={leaf_sums})\n')
    out = work / f"{spec.stem}.pcz"
    cmd = [sys.executable, "-m", "pccompile.cli", "train", str(spec), "--data", train, "--valid", valid, "--test", test]
    cmd += ["--epochs", str(args.epochs), "-b", "512", "--step-size", "1,0.1,0.01,0.001", "--drop-last"]
    cmd += ["--pseudocount", "0.01", "--samples", "0", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    history = read(out.with_name(out.stem + ".ckpt.pcz"))[0]["extra"]["train_state"]["history"]
    best = max(history, key=lambda r: r["valid_ll"])
    params = read(out)[0]["circuit"]
    sums = sum(1 for n in params["nodes"] if n["kind"] == "sum")
    from pccompile import load

    stats = load(out).circuit.stats()
    return {
        "data": name,
        "latents": latents,
        "leaf_sums": leaf_sums,
        "parameters": stats["parameters"],
        "sum_vectors": sums,
        "best_epoch": best["epoch"],
        "valid_ll": best["valid_ll"],
        "test_ll": best["test_ll"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "nltcs", "dna"])
    ap.add_argument("--latents", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/twenty_datasets"))
    ap.add_argument("--out", type=Path, default=Path("bench/results_hclt_shape.jsonl"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "w") as f:
        for name in args.datasets:
            for h in args.latents:
                for leaf_sums in (1, 0):
                    r = run(name, h, leaf_sums, args, Path(tmp))
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(
                        f"{name:7s} h{h:<3d} {'ours    ' if leaf_sums else 'released'} {r['parameters']:>9,} params "
                        f"valid {r['valid_ll']:.3f} test {r['test_ll']:.3f} (epoch {r['best_epoch']})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
