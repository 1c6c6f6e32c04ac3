# The two commands of the README. Both install into the active Python environment.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check
# DVC's stage commands call `python`: make it the interpreter set-up installs into.
PYTHON_BIN := $(shell $(PYTHON) -c 'import os, sys; print(os.path.dirname(sys.executable))')
export PATH := $(PYTHON_BIN):$(PATH)

.PHONY: setup setup-test demo test slurm-local

# torch first, and only when absent: a GPU machine keeps its own CUDA build, and on a
# CPU machine pinning the CPU build stops the registry's CUDA wheels from coming in.
setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -e .

setup-test: setup
	$(PIP) -e ".[test]"

demo: setup
	$(PYTHON) -m dvc repro

test: setup-test
	$(PYTHON) -m pytest -q

# Optional: a real single-node SLURM on localhost (Debian packages, needs root), used by
# the tests marked `slurm`; without it those tests are skipped.
slurm-local:
	bash scripts/slurm-local.sh
