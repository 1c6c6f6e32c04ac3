"""Shared fixtures: the repository's paths, tiny params files, and running stage scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# A demo world small enough for stage and DVC tests: 2 train + 1 val video per class.
TINY_OVERRIDES = {
    "demo.train_videos_per_class": 2,
    "demo.val_videos_per_class": 1,
    "demo.raw_seconds": [3.0, 3.5],
    "demo.clip_seconds": 2,
    "demo.sizes": [[96, 72], [64, 96]],
    "launch.cluster": "local",
    "launch.resources.timeout_min": 10,
    "model_report.sizes": [256],  # the size the papers' figures are given at
}


def write_params(path: Path, overrides: dict | None = None) -> Path:
    """The repository's params.yaml with ``{"a.b": value}`` overrides applied, written to ``path``."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in {**TINY_OVERRIDES, **(overrides or {})}.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_stage(stage: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python stages/<stage>.py ARGS`` from ``cwd`` (relative paths in params resolve there)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    """A tiny params.yaml in a fresh working directory (``tmp_path``)."""
    return write_params(tmp_path / "params.yaml")
