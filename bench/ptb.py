"""Penn Treebank characters in the released prune-grow code's `ptbchar_288` setting, trained with
`pcc train`: one sentence per row, one categorical variable per character position.

    python bench/ptb.py --structure hclt --latents 32 --epochs 30 --knots 0.3,0.1,0.01,0.001 \
        --pseudocount 0.01 --json bench/results_ptb.jsonl
    python bench/ptb.py --structure hmm --latents 64 ...
    python bench/ptb.py --structure hclt --latents 32 --prune-grow preset=paper,epochs=8,warmup=2,rounds=2

The rows are built here from the shared Mikolov files (`ptb.{train,valid,test}.txt.gz`; nothing of
PTB enters the project): each line without its leading and trailing space, its characters mapped
to a vocabulary of the training text's characters (index 0, '@', is the padding), padded with 0
to 288 positions; a longer sentence is cut at 288 (their count is printed). The released files
hold the same rows: valid has the same 3,370 sentences, 14 of them cut.

Measures: bits per dimension as the released code computes it, -LL / (288 ln 2) over the padded
row (the Sparse PC paper's 1.35 for PTB characters), and bits per character, -LL over the
sentence's characters (the padding's probability included, since the model must say where a
sentence ends). Rows are written under --work (git-ignored). With --prune-grow the dense model
of the same --work, structure and latents is the start (train it first), and the row gets the
table of rounds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shlex
from pathlib import Path

import numpy as np
from pcc_run import best_epoch, commit, data_flags, keep, parameters, run, train_command

LENGTH = 288
PAD = "@"


def sentences(path: Path) -> list[str]:
    return [line.strip() for line in gzip.open(path, "rt").read().split("\n") if line.strip()]


def encode(lines: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, int]:
    """[rows, 288] codes of the sentences (padding 0; a longer one cut at 288), and how many
    were cut."""
    x = np.zeros((len(lines), LENGTH), np.uint8)
    for i, s in enumerate(lines):
        x[i, : min(len(s), LENGTH)] = [vocab[c] for c in s[:LENGTH]]
    return x, sum(len(s) > LENGTH for s in lines)


def write_data(ptb: Path, work: Path) -> dict:
    """work/{train,valid,test}.npy and vocab.json; returns the split sizes and characters."""
    train = sentences(ptb / "ptb.train.txt.gz")
    vocab = {PAD: 0, **{c: i + 1 for i, c in enumerate(sorted(set("".join(train))))}}
    info = {"vocabulary": len(vocab)}
    for split in ("train", "valid", "test"):
        lines = train if split == "train" else sentences(ptb / f"ptb.{split}.txt.gz")
        missing = set("".join(lines)) - set(vocab)
        if missing:
            raise SystemExit(f"ptb.{split}: characters not in the training text: {sorted(missing)}")
        x, cut = encode(lines, vocab)
        np.save(work / f"{split}.npy", x)
        info[split] = {"rows": len(x), "cut": cut, "characters": int((x != 0).sum())}
    (work / "vocab.json").write_text(json.dumps(vocab))
    return info


def spec_text(structure: str, latents: int, vocabulary: int) -> str:
    template = {
        "hclt": f'hclt(c, latents={latents}, data="train.npy", max_rows=20000)',
        "hclt-released": f'hclt(c, latents={latents}, data="train.npy", max_rows=20000, leaf_sums=0)',
        "hmm": f"hmm(c, latents={latents}, homogeneous=1)",
    }[structure]
    return f'var c[{LENGTH}] : categorical({vocabulary})\nname = "ptb-{structure}{latents}"\nroot = {template}\n'


def measures(ll: float, characters: int, rows: int) -> dict:
    """bpd (the released measure, over 288 padded positions) and bits per character."""
    return {"bpd": -ll / (LENGTH * math.log(2)), "bits_per_char": -ll * rows / (characters * math.log(2))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptb", type=Path, default=Path("../shared/data/ptb"))
    ap.add_argument("--work", type=Path, default=Path("runs/ptb"))
    ap.add_argument("--structure", choices=["hclt", "hclt-released", "hmm"], default="hclt")
    ap.add_argument("--latents", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--knots", default=None, help="step-size knots, e.g. 0.3,0.1,0.01,0.001 (with --drop-last)")
    ap.add_argument("--pseudocount", default="0.01")
    ap.add_argument("--prune-grow", default=None, help="prune-grow options; starts from the dense model in --work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="append the result row to this file")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    info = write_data(a.ptb, a.work)
    print(json.dumps(info), flush=True)
    name = f"{a.structure}{a.latents}"
    dense = a.work / f"{name}.pcz"
    if a.prune_grow:
        out = a.work / f"{name}_pg.pcz"  # the schedule is the learner's (its preset's), as for MNIST
        cmd = ["pcc", "train", str(dense), *data_flags(a.work), "--prune-grow", a.prune_grow]
        cmd += ["--seed", str(a.seed), "-o", str(out)]
    else:
        spec = a.work / f"{name}.pc"
        spec.write_text(spec_text(a.structure, a.latents, info["vocabulary"]))
        out = dense
        cmd = train_command(spec, a.work, out, a.epochs, a.batch, a.knots, a.pseudocount) + ["--seed", str(a.seed)]
    head = commit()  # the code that runs, before anything else lands
    seconds = run(cmd)
    test = info["test"]
    row = {"data": "ptbchar_288", "structure": a.structure, "latents": a.latents, "seed": a.seed}
    if a.prune_grow:
        rounds = json.loads(out.with_name(out.stem + ".rounds.json").read_text())
        best = max(rounds, key=lambda r: r["valid_ll"])
        row.update(learner=f"prune-grow {a.prune_grow}", best_round=best["round"], rounds=rounds)
    else:
        best = best_epoch(out.with_name(out.stem + ".ckpt.pcz"))
        row.update(epochs=a.epochs, best_epoch=best["epoch"], parameters=parameters(out))
    row.update(valid_ll=best["valid_ll"], test_ll=best["test_ll"])
    row.update({f"test_{k}": v for k, v in measures(best["test_ll"], test["characters"], test["rows"]).items()})
    row.update(seconds=round(seconds, 1), command=shlex.join(cmd), commit=head)
    keep(row, a.json)


if __name__ == "__main__":
    main()
