#!/usr/bin/env bash
# Fetch, on a machine with a package registry, the wheels the lent GPU machine lacks, into
# .whl/ (git-ignored). That machine has Python 3.12 with CUDA torch, torchvision,
# torchaudio, h5py, numpy, click, pyyaml, tqdm, cloudpickle and pytest, and no registry.
# Then run scripts/gpu-check.sh there with .whl carried (README, Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=(av==18.1.0 simplejpeg==1.9.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
        typing-inspection==0.4.2 submitit==1.5.4)
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${wheels[@]}"
du -sh .whl
