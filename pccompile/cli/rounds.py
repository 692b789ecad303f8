"""`pcc train`'s rounds learners (prune-grow, compression): their options from the flags, the
between-epochs hook, a line per round as it ends, and the rounds' table and plot at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.table import Table

from .common import bpd, console, fmt


def round_options(prune_grow: Optional[str], compress: Optional[str]):
    """The options of the rounds learner asked for (prune-grow or compression), or None."""
    from pccompile.ir import ArgumentError
    from pccompile.learn import CompressOptions, PruneGrowOptions

    if prune_grow is not None and compress is not None:
        raise ArgumentError("--prune-grow and --compress are two learners; choose one")
    if prune_grow is not None:
        return PruneGrowOptions.parse(prune_grow)
    return None if compress is None else CompressOptions.parse(compress)


def attach_rounds_learner(trainer, pg, train, out: Path, backend: str, device: str, group=None):
    """The rounds learner (prune-grow or compression) as the trainer's between-epochs hook;
    data-parallel, every rank prunes by the all-reduced flows and rank 0 writes the files."""
    from pccompile.learn import Compress, CompressOptions, PruneGrow

    cls = Compress if isinstance(pg, CompressOptions) else PruneGrow
    hook = trainer.between_epochs = cls(
        pg,
        train,
        out,
        on_round=_round_note,
        backend=backend,
        device=None if device == "cpu" else device,
        group=group,
    )
    return hook


def best_round(hook, out: Path, backend: str, device: str):
    """The best round's model (by validation LL), after the rounds' table and plot."""
    import pccompile

    model = pccompile.load(hook.best_path, backend=backend, device=None if device == "cpu" else device)
    _report_rounds(hook, out, model.num_vars)
    return model


def _round_note(row) -> None:
    console.print(
        f"[b]round {row['round']}[/b]: {row['nodes']:,} nodes, {row['edges']:,} sum edges, "
        f"{row['parameters']:,} parameters, valid LL {fmt(row['valid_ll'])}"
    )


def _report_rounds(hook, out: Path, num_vars: int) -> None:
    """The rounds' table, and a PNG of validation LL against rounds and against parameters."""
    from pccompile.plots import prune_grow_curve

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
