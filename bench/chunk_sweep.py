"""The torch backend's CPU piece size (codegen/torch_backend/executor.py), swept.

Forward and EM step of the bench/vs_cirkit.py circuits with the [groups, K, samples] temporaries
of one sum piece fixed at 2^e entries (PIECE_BUDGET; by default the backend takes 2^20 or an
eighth of the value buffer, whichever is smaller), batch 512, 2 threads, medians of 5. Needs the benchmark venv of
bench/vs_cirkit.py (the circuits are cirkit's, translated):

    /tmp/cirkit/bin/python bench/chunk_sweep.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_seconds  # noqa: E402
from vs_cirkit import dataset, symbolic_circuit, to_pccompile  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    return 1e3 * median_seconds(fn, repeats)


def main():
    from pccompile.codegen.torch_backend import executor
    from pccompile.ir import Domain, Variable

    import pccompile as pc
    from pccompile.learn import em_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/twenty_datasets")
    ap.add_argument("--cases", nargs="+", default=["rat_spn:64", "rat_spn:16", "hclt:64", "pd:64"])
    ap.add_argument("--exponents", nargs="+", type=int, default=[16, 18, 20, 22, 30])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print("| circuit | " + " | ".join(f"2^{e}: forward / EM ms" for e in args.exponents) + " |")
    print("|---|" + "---:|" * len(args.exponents))
    for case in args.cases:
        structure, K = case.split(":")
        x, cats = dataset(structure, args.data)
        sc, values = symbolic_circuit(structure, x, cats, int(K), 0, False)
        variables = [Variable(f"x{i}", Domain(cats)) for i in range(x.shape[1])]
        model = pc.compile(pc.build(to_pccompile(sc, values), variables))
        xb = torch.as_tensor(x[np.random.default_rng(0).choice(len(x), 512)])
        x_int, x_real = model.encode(xb)
        cells = []
        for e in args.exponents:
            executor.PIECE_BUDGET = 1 << e

            def forward():
                with torch.no_grad():
                    model(xb)

            fwd = median_ms(forward, args.repeats)
            em = median_ms(lambda: em_step(model, x_int, x_real, 0.1, 0.1), args.repeats)
            cells.append(f"{fwd:.1f} / {em:.1f}")
        print(f"| {structure} K={K} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
