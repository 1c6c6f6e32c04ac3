"""kill -9 in the middle of `decode` and of `spectrogram`, then rerun: the finished stores equal an
uninterrupted run's clip by clip, completed shards are kept, and nothing is lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from avsf.data.store import STATS_NAME, store_hashes
from avsf.io.atomic import TEMP_MARKER
from clip_factory import KINETICS, ClipSpec, build_store, store_params
from conftest import REPO
from process_group import kill_group_when

SPECS = [ClipSpec(f"clip{i}", seconds=4.0, size=(96, 72), tone_hz=300.0 + 100 * i,
                  split="train" if i % 3 else "val") for i in range(6)]
OVERRIDES = {"decode.clips_per_shard": 1, "decode.short_side": 72}


def kill_mid_stage(stage: str, root: Path, params: Path, shards: Path) -> None:
    """Start the stage and SIGKILL its process group once shard 0 is complete and a later
    shard is being written."""
    log = (root / f"{stage}-killed.log").open("w")
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params", str(params)],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def mid_stage() -> bool:  # (a shard's temporary: not the inventory's, written after the metrics)
        names = os.listdir(shards) if shards.is_dir() else []
        return "shard-00000.h5" in names and any(n.startswith(".shard-") and TEMP_MARKER in n for n in names)

    try:
        kill_group_when(proc, mid_stage)
    except AssertionError as err:
        raise AssertionError(f"{stage} was not killed mid-stage ({err}): {(root / f'{stage}-killed.log').read_text()}")
    assert proc.returncode == -signal.SIGKILL


def rerun(stage: str, root: Path, params: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params", str(params)],
                          cwd=root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same clips through both stages, uninterrupted."""
    root = tmp_path_factory.mktemp("uninterrupted")
    build_store(root, SPECS, OVERRIDES)
    return root


def test_killed_stages_resume_to_identical_stores(reference, tmp_path):
    shutil.copytree(reference / "data" / "kinetics" / "clips", tmp_path / "data" / "kinetics" / "clips")
    path, params = store_params(tmp_path, OVERRIDES)
    frames, logmel = tmp_path / KINETICS.frames("kinetics"), tmp_path / KINETICS.logmel("kinetics")

    kill_mid_stage("decode", tmp_path, path, frames)
    assert not (tmp_path / KINETICS.metrics("kinetics", "decode")).exists()  # it really stopped part-way
    kept = (frames / "shard-00000.h5").stat().st_mtime_ns
    rerun("decode", tmp_path, path)
    assert (frames / "shard-00000.h5").stat().st_mtime_ns == kept  # finished work is not redone
    assert store_hashes(frames) == store_hashes(reference / KINETICS.frames("kinetics"))
    assert len(store_hashes(frames)) == len(SPECS)

    kill_mid_stage("spectrogram", tmp_path, path, logmel)
    assert not (tmp_path / KINETICS.metrics("kinetics", "spectrogram")).exists()
    rerun("spectrogram", tmp_path, path)
    assert store_hashes(logmel) == store_hashes(reference / KINETICS.logmel("kinetics"))
    assert (logmel / STATS_NAME).read_text() == (reference / KINETICS.logmel("kinetics") / STATS_NAME).read_text()

    for name in ("index.csv", "classes.json"):
        assert (frames / name).read_text() == (reference / KINETICS.frames("kinetics") / name).read_text()
    for directory in (frames, logmel):
        assert not [n for n in os.listdir(directory) if TEMP_MARKER in n]  # no temporaries left
