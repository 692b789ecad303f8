#!/usr/bin/env bash
# What issue 5 needs from a GPU, in three stages of under 10 minutes each (the device tool's
# limit per command); each installs what it needs, so each can run on a fresh machine:
#   bash bench/gpu_run.sh tests     the Triton tests with compiled kernels on the GPU (CUDA graphs
#                                   included), then `pcc demo` and the README's `pcc train` example
#                                   with --backend triton
#   bash bench/gpu_run.sh compare   bench/vs_pyjuice.py: pccompile and PyJuice 2.6.3 side by side
#   bash bench/gpu_run.sh sweep     our side only, MNIST HCLT latents 512, a few tile configurations
#   bash bench/gpu_run.sh multi     with 2+ GPUs: bench/distributed.py on NCCL (1 and all GPUs), and
#                                   `pcc train --distributed` on all of them
#   bash bench/gpu_run.sh prune     bench/prune_speed.py on the Triton backend: forward and EM-step
#                                   time of pruned HCLTs (digits, MNIST) against the dense one
# Results and logs go to $OUT (default: runs/gpu).
#
# Prepared on a machine with internet (the GPU machine has none), from the repository root:
#   mkdir -p .whl bench/data && printf '/.whl/\n/bench/data/\n' >> .git/info/exclude
#   pip download --no-deps pyjuice==2.6.3 lark -d .whl
#   cp ../shared/data/mnist/train-images-idx3-ubyte.gz bench/data/
# and run with `.whl` and `bench/data` carried.
set -uo pipefail
stage=${1:-tests}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
mnist=()
[ -f bench/data/train-images-idx3-ubyte.gz ] && mnist=(--mnist bench/data/train-images-idx3-ubyte.gz)

case "$stage" in
tests)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
        | tee -a "$OUT/gpu.txt"
    echo "== tests on the GPU"
    PCC_TEST_DEVICE=cuda timeout 270 python3 -m pytest -q -x tests/test_triton.py tests/test_graphs.py 2>&1 \
        | tee "$OUT/tests.txt" | tail -15
    echo "== the README's main job and example, triton backend"
    timeout 120 pcc demo --backend triton --device cuda --out-dir "$OUT/demo" 2>&1 | tee "$OUT/demo.txt" | tail -12
    d=examples/data/nltcs/nltcs
    timeout 120 pcc train examples/nltcs.pc --data $d.train.data.gz --valid $d.valid.data.gz \
        --test $d.test.data.gz --epochs 30 --backend triton --device cuda -o "$OUT/nltcs.pcz" 2>&1 \
        | tee "$OUT/train.txt" | tail -8
    ;;
compare)
    timeout 570 python3 bench/vs_pyjuice.py "${mnist[@]}" --out "$OUT" 2>&1 | tee "$OUT/vs_pyjuice.txt" | tail -30
    ;;
sweep)
    timeout 570 python3 bench/vs_pyjuice.py "${mnist[@]}" --structures mnist --latents 512 --no-pyjuice \
        --steps 10 --triton '{}' --triton '{"block_b": 32}' --triton '{"block_b": 128}' \
        --triton '{"max_block_k": 64}' --triton '{"precision": "bf16"}' --out "$OUT/sweep" 2>&1 \
        | tee "$OUT/sweep.txt" | tail -12
    ;;
prune)
    timeout 200 python3 bench/prune_speed.py --backend triton --device cuda --latents 64 --batch 512 --repeat 20 \
        2>&1 | tee "$OUT/prune_digits.txt"
    [ ${#mnist[@]} -gt 0 ] && timeout 350 python3 bench/prune_speed.py --backend triton --device cuda \
        --latents 64 --batch 512 --repeat 20 "${mnist[@]}" 2>&1 | tee "$OUT/prune_mnist.txt"
    ;;
multi)
    ngpu=$(nvidia-smi -L | wc -l)
    if [ "$ngpu" -lt 2 ]; then echo "multi: $ngpu GPU(s), nothing to do" | tee "$OUT/multi.txt"; exit 0; fi
    timeout 400 python3 bench/distributed.py --ranks 1 "$ngpu" --device cuda --mnist bench/data \
        --out "$OUT/distributed.jsonl" 2>&1 | tee "$OUT/multi.txt" | tail -8
    timeout 150 torchrun --nproc-per-node "$ngpu" -m pccompile.cli train examples/digits.pc --data builtin:digits \
        --epochs 5 --device cuda --distributed -o "$OUT/multi.pcz" --samples 0 2>&1 | tee -a "$OUT/multi.txt" | tail -8
    ;;
*)
    echo "usage: bash bench/gpu_run.sh tests|compare|sweep|prune|multi" >&2
    exit 2
    ;;
esac
