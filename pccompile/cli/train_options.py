"""The `pcc train` options declared once as Annotated typer options (flag names and help), so
the command's signature stays a list of names."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

TrainData = Annotated[str, typer.Option("--data", "-d", help="training data: .npy/.npz/.data/.txt or builtin:digits")]


PruneGrowOption = Annotated[
    Optional[str],
    typer.Option(
        "--prune-grow",
        help="the prune-grow learner: 'rounds=5,fraction=0.75,factor=2,noise=0.1,epochs=5,patience=0' "
        "(at most `epochs` per round, replacing --epochs; a round also ends after `patience` epochs without "
        "a better validation LL, 0: never); each round keeps its best epoch by validation LL, and the best "
        "round is saved. More: growth=released|independent (the noise form), warmup=N (a round's first N "
        "epochs can neither be its best nor end it), round_patience=N (stop after N rounds without a new "
        "best); preset=paper is the released SparsePC loop (20 rounds of 150 epochs through "
        "0.3,0.1,0.01,0.001, sigma 0.3, warm-up 50, batch 512, pseudocount 0.01, --drop-last), any setting "
        "or flag given overriding it",
    ),
]
PatienceOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="with --valid: stop after this many epochs without a better validation LL (0: train every "
        "epoch); the saved model is always the epoch of best validation LL",
    ),
]
FinishOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="full-batch EM epochs (step 1) after the --epochs ones, as the released HCLT codes end their "
        "training; counted in the table, the best epoch and --patience",
    ),
]
SoftenOption = Annotated[
    float,
    typer.Option(
        "--soften",
        help="data softening beta in [0, 1): EM learns from soft evidence, each observed training value keeping "
        "weight 1 - beta and beta spread by the value frequencies (Liu & Van den Broeck 2021 used 0.002); "
        "valid and test data stay hard",
    ),
]
EntropyOption = Annotated[
    float,
    typer.Option(
        "--entropy-reg",
        help="entropy regularisation tau in [0, 1): every EM M-step also maximises tau x (rows) x each node's "
        "reach probability x its entropy (Liu & Van den Broeck 2021 used 0.001)",
    ),
]
LVDOption = Annotated[
    Optional[str],
    typer.Option(
        "--lvd",
        help="latent variable distillation before EM: 'encoder=mae,clusters=auto,pseudocount=0.1' (encoder mae: "
        "a small masked autoencoder trained on the data and cached; patches: the pixels' own patches); each "
        "latent's region is embedded, clustered by k-means into its states, and the circuit set to the "
        "closed-form MLE on the completed data; EM training follows. More settings: patch, own, rows, steps, "
        "dim, seed (docs/lvd.md)",
    ),
]
CompressOption = Annotated[
    Optional[str],
    typer.Option(
        "--compress",
        help="compression: 'fraction=0.1,tolerance=0.01,epochs=3,rounds=30,patience=0': prune and fine-tune until "
        "validation LL falls more than the tolerance (relative) below its start; the smallest model "
        "within it is saved",
    ),
]

StepSizeOption = Annotated[
    Optional[str],
    typer.Option(
        "--step-size",
        help="EM step size (em 0.1, em-full 1.0) or learning rate (sgd 0.05, adam 0.1); or the knots of "
        "linear phases of equal length, e.g. 1,0.1,0.01,0.001 (then --schedule and --step-size-end do not apply)",
    ),
]
DropLastOption = Annotated[
    Optional[bool],
    typer.Option(
        "--drop-last/--keep-last",
        help="skip each epoch's last, incomplete mini-batch, as the released codes do [default: keep, or the "
        "--prune-grow preset's]",
        show_default=False,
    ),
]
DistributedOption = Annotated[
    bool,
    typer.Option(
        "--distributed",
        help="data-parallel training under torchrun (gloo on the CPU, NCCL on GPUs): each process reads its "
        "share of every batch and the statistics are all-reduced, so N processes train the model one would "
        "(--prune-grow, --compress and --lvd too); e.g. torchrun --nproc-per-node 2 -m pccompile.cli train ... "
        "--distributed (docs/distributed.md)",
    ),
]
