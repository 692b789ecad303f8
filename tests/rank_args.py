"""Run `pcc ARGS...` as one rank of a torchrun job with '{rank}' in ARGS replaced by the rank:
each rank reading its own file, the careless set-up that check_same_data must refuse.

    python -m torch.distributed.run --nproc-per-node 2 tests/rank_args.py train spec.pc --data x{rank}.npy ..."""

import os
import sys

from pccompile.cli import main

sys.argv = ["pcc"] + [a.replace("{rank}", os.environ["RANK"]) for a in sys.argv[1:]]
main()
