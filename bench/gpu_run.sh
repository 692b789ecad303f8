#!/usr/bin/env bash
# Everything issue 5 needs from a GPU, in one command on the lent machine (about 15 minutes):
#   1. the Triton tests with the compiled kernels on the GPU (CUDA graphs included),
#   2. `pcc train --backend triton` on the README example,
#   3. bench/vs_pyjuice.py: pccompile and PyJuice 2.6.3 side by side.
# Results and logs go to $OUT (default: runs/gpu).
#
# Prepared on a machine with internet (the GPU machine has none), from the repository root:
#   mkdir -p .whl bench/data && printf '/.whl/\n/bench/data/\n' >> .git/info/exclude
#   pip download --no-deps pyjuice==2.6.3 lark -d .whl
#   cp ../shared/data/mnist/train-images-idx3-ubyte.gz bench/data/
# then run with `.whl` and `bench/data` carried:  bash bench/gpu_run.sh
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

echo "== 1. tests on the GPU"
PCC_TEST_DEVICE=cuda timeout 300 python3 -m pytest -q -x tests/test_triton.py tests/test_graphs.py 2>&1 \
    | tee "$OUT/tests.txt" | tail -15

echo "== 2. the README's main job and example on the GPU, triton backend"
timeout 300 pcc demo --backend triton --device cuda --out-dir "$OUT/demo" 2>&1 | tee "$OUT/demo.txt" | tail -12
d=examples/data/nltcs/nltcs
timeout 300 pcc train examples/nltcs.pc --data $d.train.data.gz --valid $d.valid.data.gz --test $d.test.data.gz \
    --epochs 30 --backend triton --device cuda -o "$OUT/nltcs.pcz" 2>&1 | tee "$OUT/train.txt" | tail -8

echo "== 3. pccompile vs PyJuice"
mnist=()
[ -f bench/data/train-images-idx3-ubyte.gz ] && mnist=(--mnist bench/data/train-images-idx3-ubyte.gz)
timeout 900 python3 bench/vs_pyjuice.py "${mnist[@]}" --out "$OUT" 2>&1 | tee "$OUT/vs_pyjuice.txt" | tail -30
