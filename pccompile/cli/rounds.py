"""What `pcc train` prints of a rounds learner (prune-grow, compression): a line per round as it
ends, and the rounds' table and plot at the end (the learner itself: learn/run.py)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .common import bpd, console, fmt


def round_note(row) -> None:
    console.print(
        f"[b]round {row['round']}[/b]: {row['nodes']:,} nodes, {row['edges']:,} sum edges, "
        f"{row['parameters']:,} parameters, valid LL {fmt(row['valid_ll'])}"
    )


def report_rounds(hook, out: Path, num_vars: int) -> None:
    """The rounds' table, and a PNG of validation LL against rounds and against parameters."""
    from pccompile.io.plots import prune_grow_curve

    table = Table(title="prune-grow rounds (round 0: the dense circuit)", header_style="bold")
    cols = (
        "round",
        "best epoch",
        "nodes",
        "sum edges",
        "parameters",
        "epoch 0 valid",
        "train LL",
        "valid LL",
        "test LL",
        "test bpd",
        "sec",
    )
    for col in cols:
        table.add_column(col, justify="right")
    best = hook.best
    for r in hook.rows:
        mark = " *" if r is best else ""
        table.add_row(
            f"{r['round']}{mark}",
            str(r.get("best_epoch", "")),
            f"{r['nodes']:,}",
            f"{r['edges']:,}",
            f"{r['parameters']:,}",
            fmt(r.get("untrained_valid_ll")),  # before training: the dip after growing
            fmt(r["train_ll"]),
            fmt(r["valid_ll"]),
            fmt(r["test_ll"]),
            bpd(r["test_ll"], num_vars),
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    png = out.with_name(out.stem + "_rounds.png")
    prune_grow_curve(hook.rows, png, num_vars)
    console.print(f"best round: {best['round']} (*), saved as {out}; rounds: {png}, {hook.rounds_path}")
    first = hook.rows[0]
    if best is not first:
        console.print(
            f"against the dense round 0: {best['parameters'] / first['parameters']:.2f}x the parameters, "
            f"{best['edges'] / first['edges']:.2f}x the sum edges"
        )
