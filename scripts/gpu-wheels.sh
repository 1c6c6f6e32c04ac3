#!/usr/bin/env bash
# Fetch, on a machine with a package registry, the wheels the lent GPU machine lacks, into
# .whl/ (git-ignored). That machine has Python 3.12 with CUDA torch, torchvision,
# torchaudio, h5py, numpy, click, pyyaml, tqdm, cloudpickle and pytest, and no registry.
# Then run scripts/gpu-check.sh there with .whl carried (README, Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
# Ours: PyAV, simplejpeg, pydantic and submitit (binary wheels for CPython 3.12).
binary=(av==18.1.0 simplejpeg==1.9.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
        typing-inspection==0.4.2 submitit==1.5.4)
# The peer (bench/peer_avslowfast.py), installed as its users install it: pytorchvideo and
# what it requires (fvcore, iopath, parameterized) and they in turn (yacs, termcolor,
# tabulate, portalocker). Pillow and networkx come with torch and torchvision there.
pure=(parameterized==0.9.0 yacs==0.1.8 termcolor==3.3.0 tabulate==0.10.0 portalocker==4.4.2)
sdists=(pytorchvideo==0.1.5 fvcore==0.1.5.post20221221 iopath==0.1.10)  # on PyPI as sources only
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${binary[@]}" "${pure[@]}"
# Pure Python: built here into py3-none-any wheels, which install on 3.12 there.
python3 -m pip wheel --quiet --no-deps -w .whl "${sdists[@]}"
ls .whl
du -sh .whl
