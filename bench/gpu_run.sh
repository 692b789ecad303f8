#!/usr/bin/env bash
# Everything a lent GPU should tell us, in one run of under 8 minutes that writes each
# result under $OUT as soon as it has it, most important first:
#   tests    the Triton tests with compiled kernels on the GPU (CUDA graphs included), capped at 90 s
#   compare  bench/vs_pyjuice.py: HCLT on MNIST at latents 32/128/256/512, then the chain tree at
#            32/256, pccompile and PyJuice 2.6.3 side by side (a row per line of vs_pyjuice.jsonl)
#   train    `pcc demo` and the README's `pcc train` example with --backend triton --device cuda
#   prune    bench/prune_speed.py on the Triton backend: forward and EM step at 100/50/25/10% of edges
#   sweep    our side only, MNIST latents 512, a few tile configurations, with what time is left
#   multi    with 2+ GPUs only: bench/distributed.py on NCCL and `pcc train --distributed`
#
#   bash bench/gpu_run.sh [STAGE ...]     all stages in that order when none is named
#   SMOKE=1 bash bench/gpu_run.sh         the dry run: the same stages on the CPU at smoke sizes
#                                         (TRITON_INTERPRET=1, no installs, the python on PATH)
#
# BUDGET (seconds, default 420) bounds the whole run: each command gets the smaller of its cap and
# what is left, and a stage that would get less than it needs is skipped and says so. $OUT
# (default runs/gpu) receives at most 8 files (a remote run may return only a few): summary.txt (the
# GPU, versions, each command's exit status and time), tests.txt, vs_pyjuice.jsonl,
# vs_pyjuice.txt (its log, then the table), train.txt, prune.txt, sweep.txt and sweep.jsonl.
#
# Prepared on a machine with internet (the GPU machine has none), from the repository root:
#   mkdir -p .whl bench/data && printf '/.whl/\n/bench/data/\n' >> .git/info/exclude
#   pip download --no-deps pyjuice==2.6.3 lark -d .whl
#   cp ../shared/data/mnist/train-images-idx3-ubyte.gz bench/data/
# and run with `.whl` and `bench/data` carried: run(command="bash bench/gpu_run.sh",
# carry=[".whl", "bench/data"], timeout_s=480).
set -uo pipefail
OUT=${OUT:-runs/gpu}
BUDGET=${BUDGET:-420}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests compare train prune sweep multi)

log() { echo "$*" | tee -a "$OUT/summary.txt"; }

# limit CAP MIN: the seconds the next command may run (CAP, or less when the budget runs out);
# empty when fewer than MIN are left
limit() {
    local left=$((BUDGET - SECONDS)) cap=$1
    ((left < cap)) && cap=$left
    ((cap >= $2)) && echo "$cap"
}

# timed NAME CAP MIN FILE CMD...: CMD under its limit, its output into FILE, its status logged
timed() {
    local name=$1 cap=$2 min=$3 file=$4 lim start rc
    shift 4
    lim=$(limit "$cap" "$min")
    if [ -z "$lim" ]; then
        log "$name: skipped, $((BUDGET - SECONDS)) s of the budget left"
        return 0
    fi
    start=$SECONDS
    echo "== $name (limit ${lim} s)" >>"$file"
    timeout "$lim" "$@" >>"$file" 2>&1
    rc=$?
    log "$name: exit $rc in $((SECONDS - start)) s (limit $lim s)$([ $rc = 124 ] && echo ', cut short')"
    tail -4 "$file"
}

mnist=bench/data/train-images-idx3-ubyte.gz
[ -f $mnist ] || mnist=../shared/data/mnist/train-images-idx3-ubyte.gz
if [ "$SMOKE" = 1 ]; then
    export TRITON_INTERPRET=1
    dev=cpu
    size=(--vars 16 --cats 4 --batch 8 --steps 2)
    big=(--latents 4 8 --chain-latents 4)
    top=(--latents 8)
    prune_size=(--latents 4 --batch 8 --repeat 1 --rows 200)
    demo_epochs=(--epochs 1)
    train_epochs=1
    slow=torch # the interpreter is too slow for whole trainings: those dry runs check the plumbing
    log "smoke run on the CPU (TRITON_INTERPRET=1): plumbing only, no timing means anything"
else
    dev=cuda
    size=()
    big=()
    top=(--latents 512)
    prune_size=(--latents 64 --batch 512 --repeat 20)
    demo_epochs=()
    train_epochs=30
    slow=triton
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"
fi
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/summary.txt"
[ -f $mnist ] || log "no MNIST at bench/data: the MNIST rows and prune table are skipped"

stage_tests() {
    local env=()
    [ "$SMOKE" = 1 ] || env=(PCC_TEST_DEVICE=cuda)
    timed tests 90 30 "$OUT/tests.txt" env "${env[@]}" python3 -m pytest -q -p no:cacheprovider --maxfail=5 \
        tests/test_triton.py tests/test_graphs.py tests/test_signed_triton.py
}

stage_compare() {
    local data=()
    [ -f $mnist ] && data=(--mnist $mnist)
    timed compare 210 60 "$OUT/vs_pyjuice.txt" python3 bench/vs_pyjuice.py "${data[@]}" --device $dev \
        --backend triton "${size[@]}" "${big[@]}" --out "$OUT"
    # the table again, from the rows written as they came (a run cut short keeps what it measured)
    [ -f "$OUT/vs_pyjuice.jsonl" ] && python3 bench/vs_pyjuice.py --table "$OUT/vs_pyjuice.jsonl" >>"$OUT/vs_pyjuice.txt"
}

stage_train() {
    local d=examples/data/nltcs/nltcs
    timed demo 60 20 "$OUT/train.txt" pcc demo --backend $slow --device $dev --out-dir /tmp/pcc_demo "${demo_epochs[@]}"
    timed readme-train 45 15 "$OUT/train.txt" pcc train examples/nltcs.pc --data $d.train.data.gz \
        --valid $d.valid.data.gz --test $d.test.data.gz --epochs $train_epochs --backend $slow \
        --device $dev -o /tmp/pcc_nltcs/model.pcz
}

stage_prune() {
    timed prune-digits 40 15 "$OUT/prune.txt" python3 bench/prune_speed.py --backend $slow --device $dev \
        "${prune_size[@]}"
    [ -f $mnist ] && timed prune-mnist 60 20 "$OUT/prune.txt" python3 bench/prune_speed.py --backend $slow \
        --device $dev "${prune_size[@]}" --mnist $mnist
}

stage_sweep() {
    local data=()
    [ -f $mnist ] && data=(--mnist $mnist --structures mnist) || data=(--structures chain --chain-latents 512)
    timed sweep 120 40 "$OUT/sweep.txt" python3 bench/vs_pyjuice.py "${data[@]}" --device $dev --backend triton \
        "${size[@]}" "${top[@]}" --no-pyjuice --steps 10 --triton '{}' --triton '{"block_b": 32}' --triton '{"block_b": 128}' \
        --triton '{"max_block_k": 64}' --triton '{"precision": "bf16"}' --out /tmp/pcc_sweep
    [ -f /tmp/pcc_sweep/vs_pyjuice.jsonl ] && cp /tmp/pcc_sweep/vs_pyjuice.jsonl "$OUT/sweep.jsonl"
}

stage_multi() {
    local ngpu
    ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
    if [ "$ngpu" -lt 2 ]; then
        log "multi: $ngpu GPU(s), nothing to do"
        return 0
    fi
    timed multi-bench 150 60 "$OUT/summary.txt" python3 bench/distributed.py --ranks 1 "$ngpu" --device cuda \
        --tasks em lvd flows --mnist "$(dirname $mnist)" --out /tmp/pcc_distributed.jsonl
    timed multi-train 90 30 "$OUT/summary.txt" torchrun --nproc-per-node "$ngpu" -m pccompile.cli train \
        examples/digits.pc --data builtin:digits --epochs 5 --device cuda --distributed -o /tmp/pcc_multi.pcz \
        --samples 0
}

for stage in "${stages[@]}"; do
    case "$stage" in
    tests | compare | train | prune | sweep | multi) "stage_$stage" ;;
    *)
        echo "usage: bash bench/gpu_run.sh [tests|compare|train|prune|sweep|multi ...]" >&2
        exit 2
        ;;
    esac
done
log "done in $SECONDS s of a $BUDGET s budget"
