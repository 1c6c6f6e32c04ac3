#!/usr/bin/env bash
# Every GPU figure and GPU-only test in one call on the lent GPU machine (a machine start
# costs minutes), within 450 s (the parts' limits are estimates for an H100, not yet timed
# on one): the step of the peer (pytorchvideo's AVSlowFast) and ours in each precision, the
# bf16 loss and MFU, the loader into the GPU, end-to-end training through stage train, then
# the tests that need CUDA, torchvision or torchaudio. Each part has a time limit; each figure is written to reports/bench/ and
# copied to $OUT as soon as it exists, so a run cut short returns what finished.
#
#   bash scripts/gpu-wheels.sh      # here: the wheels the GPU machine lacks, into .whl/
#   bash scripts/gpu-check.sh       # there, from the repository root, .whl carried
#   bash scripts/gpu-check.sh --smoke   # the same parts on the CPU, tiny (tests/test_gpu_check.py)
#   bash scripts/gpu-check.sh train_stage tests   # only the parts named (a rerun)
#
# BENCH_ARGS adds arguments to every bench (--smoke: "--device cpu --tiny").
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
parts=" $* "  # the parts to run; all when none is named
for name in "$@"; do
    case $name in
        peer_step|train_step|gpu_loader|train_stage|tests) ;;
        *) echo "error: unknown part '$name'; parts: peer_step train_step gpu_loader train_stage tests" >&2; exit 2 ;;
    esac
done
out=${OUT:-$(mktemp -d)}
mkdir -p "$out" && out=$(cd "$out" && pwd)  # absolute: the benches change directory
log="$out/gpu-check.log"
export AVSF_BENCH_COPY_TO="$out" AVSF_BENCH_RUN="$(date -u +%Y%m%dT%H%M%SZ)-$$" PYTHONUNBUFFERED=1
bench_args=${BENCH_ARGS:-}
if [ $smoke = 1 ]; then bench_args="--device cpu --tiny $bench_args"; fi
start=$SECONDS
deadline=450  # seconds for the whole call: the device run's limit is 480 s

say() { echo "$*" | tee -a "$log"; }

if [ $smoke = 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)  # the carried wheels, installed for this call only
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
        || { say "error: the carried wheels do not install"; exit 1; }
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    say "no carried wheels installed: the installed packages are used"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi -L 2>/dev/null | tee -a "$log" || say "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"

say "plan (limits in seconds, $deadline in all; run $AVSF_BENCH_RUN; figures to ${AVSF_BENCH_DIR:-reports/bench} and $out):"
say "  peer_step    110  pytorchvideo's AVSlowFast R50 8x8, 224, batch 32: eager fp32, bf16 + channels_last_3d, + torch.compile"
say "  train_step   130  ours the same way; its ratio to the peer's best; bf16 loss against fp32; MFU against a bf16 matmul"
say "  gpu_loader    45  8x8 clips with log-mel from a store at 256 into the GPU, JPEG decoded by the workers and by nvJPEG"
say "  train_stage  110  stage train on a store at 256, 2 x 100 steps, against the same loop on a synthetic batch"
say "  tests         60  the tests that need CUDA, torchvision or torchaudio (skips listed; not with --smoke)"

failed=()
part() {  # part NAME LIMIT COMMAND...: run COMMAND within LIMIT seconds and what is left of the deadline
    local name=$1 limit=$2 left=$((deadline - (SECONDS - start)))
    shift 2
    if [ "$parts" != "  " ] && [[ $parts != *" $name "* ]]; then return; fi
    if [ $left -lt $limit ]; then limit=$left; fi
    if [ $limit -lt 5 ]; then say "== $name: skipped, no time left"; failed+=("$name"); return; fi
    say "== $name (limit ${limit} s)"
    local began=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    say "== $name: exit $status$([ "$status" = 124 ] && echo ' (time limit)') after $((SECONDS - began)) s"
    if [ "$status" != 0 ]; then failed+=("$name"); fi
}

# shellcheck disable=SC2086  # bench_args is a list of arguments
{
part peer_step 110 python3 bench/train_step.py --subjects peer $bench_args
part train_step 130 python3 bench/train_step.py --subjects ours $bench_args
part gpu_loader 45 python3 bench/gpu_loader.py $bench_args
part train_stage 110 python3 bench/train_stage.py $bench_args
}
if [ $smoke = 0 ]; then
    # -rs lists the skips: on the GPU machine none of these may skip.
    part tests 60 python3 -m pytest -q -rs -p no:cacheprovider tests/test_logmel.py tests/test_model_roi_align.py \
        tests/test_clip_dataset.py::test_nvjpeg_decoding_on_cuda_matches_the_worker_path \
        tests/test_train_engine.py::test_a_cuda_run_uses_bf16_and_channels_last
fi
say "done in $((SECONDS - start)) s; failed: ${failed[*]:-none}; results in $out"
[ ${#failed[@]} = 0 ]
