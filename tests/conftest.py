"""Shared fixtures: the repository's paths, tiny params files, and running stage scripts."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

# The tests run many processes side by side (stages, their jobs, loader workers) on a
# machine that may have 2 cores: OpenMP teams larger than the free cores stall every op
# (pipeline.launch.set_job_threads), so every process here computes on one thread.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# The EPIC-Kitchens world of the tests: 3 participants (one unseen), one 8 s video each a split.
TINY_EPIC_WORLD = {"participants": 3, "train_videos_per_participant": 1, "validation_videos_per_participant": 1,
                   "unseen_validation_videos": 1, "video_seconds": 8.0, "sizes": [[64, 48]], "tail_train_segments": 1,
                   "tail_validation_segments": 1}

# A demo world small enough for stage and DVC tests: 2 train + 1 val video per class.
TINY_OVERRIDES = {
    "datasets.kinetics.demo.train_videos_per_class": 2,
    "datasets.kinetics.demo.val_videos_per_class": 1,
    "datasets.kinetics.demo.raw_seconds": [3.0, 3.5],
    "datasets.kinetics.demo.clip_seconds": 2,
    "datasets.kinetics.demo.sizes": [[96, 72], [64, 96]],
    "launch.cluster": "local",
    "launch.resources.timeout_min": 10,
    "model_report.sizes": [256],  # the size the papers' figures are given at
    # A 2 x 8 tiny model on 32-pixel crops, one epoch: the train stage in seconds.
    "model.frames": 2,
    "model.stride": 8,
    "dataset.spec_frames": 32,
    "dataset.train_scale": [32, 40],
    "dataset.train_crop": 32,
    "dataset.test_scale": 32,
    "dataset.test_crop": 32,
    "train.epochs": 1,
    "train.workers": 0,
    "train.persistent_workers": False,
    "train.precise_bn_batches": 1,
    "train.log_every": 1,
    "datasets.kinetics.demo.missing_sources": 1,  # in val: a ground-truth video without a prediction
    "dataset.test_clips": 2,
    "dataset.test_crops": 1,
    "evaluate.workers": 0,
    # Two members side by side: an experiment on one leaves the other alone.
    "family": {"slowfast": {"arch": "slowfast"}, "avslowfast": {"arch": "avslowfast", "drop_pathway": 0.8}},
    # The fine-tuning flavours, small: 3 participants (one unseen), 8 s videos; 4 Charades videos.
    "datasets.epic.demo": TINY_EPIC_WORLD,
    "datasets.epic.train.epochs": 1,
    "datasets.epic.train.val_every": 1,
    # EPIC-55: the same world in its own files (its own videos), P02 held out
    "datasets.epic55.demo": copy.deepcopy(TINY_EPIC_WORLD),  # (a copy: one object would be a YAML alias)
    "datasets.epic55.train.epochs": 1,
    "datasets.epic55.train.val_every": 1,
    "datasets.epic55.train.warmup_epochs": 0.0,
    "datasets.epic55.train.precise_bn_batches": 1,
    "datasets.epic55.train.drop_last": False,  # P01 alone trains: 2 segments, less than a batch
    "datasets.charades.demo": {"train_videos": 3, "test_videos": 3, "empty_train_videos": 1, "empty_test_videos": 1,
                      "video_seconds": [6.0, 7.0], "sizes": [[64, 48]]},
    "datasets.charades.train.epochs": 1,
    "datasets.charades.train.val_every": 1,
    "datasets.charades.train.precise_bn_batches": 1,
    "datasets.charades.dataset.test_clips": 2,
    # Self-supervised: one epoch of each pretext setting; the transfer flavours with 2-3 videos a
    # class, probed for a few passes.
    "ssl.train": {"epochs": 1, "lr_policy": "steps", "lr_steps": [0.5], "warmup_epochs": 0.0, "val_every": 1},
    "ssl.probe.train_views": 2,
    "ssl.probe.epochs": 5,
    "ssl.probe.train": {"epochs": 1, "warmup_epochs": 0.0, "sync_weight": 0.0, "val_every": 1,
                        "precise_bn_batches": 1},
    # AVA: 2 train and 1 val movies of 3 keyframes, the detector fine-tuned for one epoch.
    "datasets.ava.demo": {"train_movies": 2, "val_movies": 1, "keyframes_per_movie": 3, "sizes": [[64, 48]],
                 "excluded_train_keyframes": 0, "excluded_val_keyframes": 1},
    "datasets.ava.train.epochs": 1,
    "datasets.ava.train.val_every": 1,
    "datasets.ava.train.warmup_epochs": 0.0,
    "datasets.ava.train.precise_bn_batches": 1,
    "datasets.ava.dataset": {"train_scale": [32, 40], "train_crop": 32, "test_scale": 32},
    "datasets.ucf101.demo": {"groups": 3, "clips_per_group": 1, "test_groups": 1, "video_seconds": [2.0, 2.5],
                    "sizes": [[64, 48]], "sample_rate": 16000},
    "datasets.hmdb51.demo": {"videos_per_class": 3, "train_videos": 2, "test_videos": 1, "video_seconds": [2.0, 2.5],
                    "sizes": [[64, 48]], "sample_rate": 16000},
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


def stage_main(stage: str):
    """The click command of ``stages/<stage>.py``, imported in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{stage}", REPO / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def invoke_stage(stage: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``run_stage`` for a run that stops at its params (exit 2): the stage's command in this
    process (click's runner) instead of an interpreter of its own, which costs seconds and
    adds nothing that tests/test_params.py's script runs do not check. A run that gets past
    its params fails the test: that one needs run_stage."""
    from unittest import mock

    from click.testing import CliRunner

    import pipeline.cli

    def past_params() -> None:
        raise AssertionError(f"stages/{stage}.py {' '.join(args)} got past its params: run it with run_stage")

    before = Path.cwd()
    os.chdir(cwd)
    try:
        with mock.patch.object(pipeline.cli, "configure_logging", past_params):
            result = CliRunner().invoke(stage_main(stage), list(args))
    finally:
        os.chdir(before)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess([f"stages/{stage}.py", *args], result.exit_code, result.stdout, result.stderr)


def loaded_modules(imports: str, watched: tuple[str, ...]) -> list[str]:
    """Which of the ``watched`` modules a fresh interpreter has loaded after ``import IMPORTS``."""
    code = f"import sys; import {imports}; print(','.join(sorted(m for m in {watched!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]


def stage_deps(stage: str) -> list[str]:
    """The dependencies dvc.yaml lists for ``stage`` (a foreach stage's ``do``)."""
    entry = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    return entry.get("do", entry)["deps"]


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    """A tiny params.yaml in a fresh working directory (``tmp_path``)."""
    return write_params(tmp_path / "params.yaml")


@pytest.fixture(scope="session")
def train_store(tmp_path_factory) -> Path:
    """tests/train_factory.py's store, built once for every module that trains on it (each
    copies it into its own project or only reads it)."""
    from train_factory import make_store

    root = tmp_path_factory.mktemp("train-store")
    make_store(root)
    return root / "data" / "kinetics" / "store"


@pytest.fixture(scope="session")
def train_reference(train_store, tmp_path_factory) -> Path:
    """An uninterrupted run of stage train on that store (train_factory.EPOCHS epochs, the local
    executor): what every interrupted run, local or on SLURM, must end identical to."""
    from train_factory import job_logs, project, run

    root = project(tmp_path_factory.mktemp("reference"), train_store, "run")
    done = run(root)
    assert done.returncode == 0, done.stderr + job_logs(root)
    return root


# tests/test_dvc.py's project, built in the background from the session's start when test_dvc
# runs with other tests (tests/dvc_project.py says why); test_dvc's items then run last.
DVC_PROJECT = pytest.StashKey["object"]()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
    dvc_items = [item for item in items if item.path.name == "test_dvc.py"]
    uses_project = any("project" in getattr(item, "fixturenames", ()) for item in dvc_items)
    if not uses_project or len(dvc_items) == len(items) or config.option.collectonly:
        return
    items[:] = [item for item in items if item.path.name != "test_dvc.py"] + dvc_items
    from dvc_project import Build

    config.stash[DVC_PROJECT] = Build(Path(tempfile.mkdtemp(prefix="avsf-test-dvc-")) / "project")


def pytest_sessionfinish(session, exitstatus):
    build = session.config.stash.get(DVC_PROJECT, None)
    if build is not None:
        build.stop()
        if exitstatus == 0:  # a failed session keeps the project to look at
            shutil.rmtree(build.root.parent, ignore_errors=True)
