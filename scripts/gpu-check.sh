#!/usr/bin/env bash
# Everything that needs the lent GPU machine, in one call (a machine start costs minutes):
# install the carried wheels (scripts/gpu-wheels.sh), run the tests that need CUDA,
# torchvision or torchaudio, then the GPU benches. Results land in reports/bench/ and,
# when $OUT is set (the device tool), are copied there with the test log.
#
#   bash scripts/gpu-check.sh                 # on the GPU machine, from the repository root
#   BENCH_ARGS="--device cpu --tiny" bash scripts/gpu-check.sh   # smoke run anywhere
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, torchvision, torchaudio; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    || echo "torchvision or torchaudio missing: their comparison tests will skip"
# -rs lists the skips: on the GPU machine the torchvision, torchaudio and CUDA checks must run.
python3 -m pytest -q -rs -p no:cacheprovider tests/test_logmel.py tests/test_model_roi_align.py \
    tests/test_clip_dataset.py tests/test_model_builders.py tests/test_model_bench.py \
    tests/test_train_engine.py 2>&1 | tee "$out/gpu-tests.log"
tests=${PIPESTATUS[0]}
status=0
# Each result is copied as soon as it is written: a run stopped at the device's time limit
# still returns what finished.
for bench in gpu_loader train_step train_loop; do
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
    python3 "bench/$bench.py" ${BENCH_ARGS:-} || status=1
    for file in reports/bench/"$bench"*.json; do
        [ "$file" -nt .whl ] && cp "$file" "$out/"
    done
done
echo "tests exit $tests, benches exit $status; results in $out"
exit $((tests || status))
