"""The project's DVC settings (its .dvc/config and dvc.yaml, as a user's copy has them) keep the
data once on disk (DVC tracks each data folder by its inventory), a resumable data stage killed
mid-run is never "up to date" and, rerun, leaves `dvc status` clean and DVC's cache intact (no
stage writes into it); and DVC takes any source (README "DVC at Kinetics scale")."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avsf.data.store import read_meta
from file_server import FileServer
from clip_factory import ClipSpec, write_clip
from conftest import REPO, write_params
from process_group import kill_group_when

pytestmark = pytest.mark.timeout(600)

FRAMES = Path("data/kinetics/store/frames")
TARGETS = ("download@kinetics", "decode@kinetics")
OLD, NEW = 90, 70  # decode.jpeg_quality before and after


def dvc(*args: str, cwd: Path, check: bool = True) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd)}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert not check or result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_project(root: Path, overrides: dict | None = None) -> Path:
    """The project's dvc.yaml, code and DVC config, with 6 Kinetics rows from 3 real videos
    (sources/videos) and ``overrides`` of its params."""
    for name in ("dvc.yaml", "stages", "pipeline", "avsf"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    videos = root / "sources/videos"
    videos.mkdir(parents=True)
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for i, label in enumerate(("abseiling", "air drumming", "archery")):
        write_clip(videos / f"vid{i}.mp4", ClipSpec(f"vid{i}", seconds=4.0, size=(96, 72), tone_hz=300 + 100 * i))
        rows += [f"{label},vid{i},0,2,train,0", f"{label},vid{i},2,4,{'val' if i == 0 else 'train'},0"]
    (root / "sources/kinetics.csv").write_text("\n".join(rows) + "\n")
    write_params(root / "params.yaml", {
        "launch.cluster": "debug",
        "datasets.kinetics.annotations": "sources", "datasets.kinetics.source": "sources/videos",
        "datasets.kinetics.manifests": ["kinetics.csv"],
        "decode.clips_per_shard": 1,  # six shards: the kill lands between two of them
        "decode.short_side": 48,
        **(overrides or {}),
    })
    (root / ".gitignore").write_text("__pycache__/\n/logs/\n/data/\n/sources/\n")
    git("init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    for name in ("config", "plots_page.html"):  # the project's own settings
        shutil.copy2(REPO / ".dvc" / name, root / ".dvc" / name)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "project", cwd=root)
    return root


def cache_objects(root: Path) -> list[Path]:
    return [p for p in (root / ".dvc/cache/files/md5").rglob("*") if p.is_file()]


def disk_bytes(*paths: Path) -> int:
    """Bytes the files under ``paths`` take, each inode once (hard links are one file)."""
    seen, total = set(), 0
    for path in paths:
        for p in path.rglob("*"):
            st = p.lstat()
            if p.is_file() and not p.is_symlink() and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def qualities(root: Path) -> list[int | None]:
    """Each shard's JPEG quality, as its meta records it (None: not readable)."""
    return [(read_meta(p) or {}).get("settings", {}).get("jpeg_quality")
            for p in sorted((root / FRAMES).glob("shard-*.h5"))]


def run_and_kill_when(cmd: list[str], root: Path, rebuilt: int) -> None:
    """Run ``cmd`` in ``root`` and kill it, with everything it started, as soon as more than
    ``rebuilt`` shards are made with the new settings (a shard has its final name only when whole)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kill_group_when(proc, lambda: qualities(root).count(NEW) > rebuilt, timeout=240, poll_s=0.005)
    assert qualities(root).count(NEW) < 6, "killed after the last shard: not mid-run"


def test_a_killed_data_stage_rerun_leaves_dvc_status_clean_and_the_cache_intact(tmp_path):
    root = make_project(tmp_path)
    dvc("repro", *TARGETS, cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "repro", cwd=root)
    data = root / "data"
    apparent = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    # One copy: the clips and the frame store are not also copied into the cache.
    assert disk_bytes(data, root / ".dvc/cache") < 1.1 * apparent

    # A decode setting changes, so every shard is rebuilt. First the stage alone (as a job
    # requeued on a cluster reruns it, without DVC), killed as soon as a new shard is whole.
    params = (root / "params.yaml").read_text()
    assert f"jpeg_quality: {OLD}" in params and qualities(root) == [OLD] * 6
    (root / "params.yaml").write_text(params.replace(f"jpeg_quality: {OLD}", f"jpeg_quality: {NEW}"))
    run_and_kill_when([sys.executable, "stages/decode.py", "--dataset", "kinetics"], root, 0)
    # DVC tracks the store by its inventory, which the stage removed first: the unfinished
    # store is a deleted output, not "up to date"
    assert not (root / FRAMES / "inventory.csv").exists()
    assert "deleted:" in dvc("status", *TARGETS, cwd=root)
    # Then through DVC, killed again after one more shard; then to the end.
    run_and_kill_when([sys.executable, "-m", "dvc", "repro", *TARGETS], root, qualities(root).count(NEW))
    output = dvc("repro", *TARGETS, cwd=root)
    assert "Running stage 'decode@kinetics'" in output and "Running stage 'download@kinetics'" not in output
    assert qualities(root) == [NEW] * 6
    assert "up to date" in dvc("status", *TARGETS, cwd=root)
    # Every object in DVC's cache still holds what its name (its md5) says.
    objects = cache_objects(root)
    assert objects
    for path in objects:
        name = path.parent.name + path.name.removesuffix(".dir")
        assert hashlib.md5(path.read_bytes()).hexdigest() == name, path


def test_dvc_repro_downloads_from_an_http_source_and_takes_youtube_as_one(tmp_path):
    """A remote source is no path DVC can hash: download@<d> depends on the annotations and the
    params, so `dvc repro` fetches from an http template, and a `youtube` source is a changed
    param for `dvc status`, not a missing file (both stopped DVC when the source was a dep)."""
    server = FileServer()
    try:
        root = make_project(tmp_path, {"datasets.kinetics.source": server.url + "/raw/{youtube_id}.mp4"})
        for video in (root / "sources/videos").iterdir():
            server.files[f"raw/{video.name}"] = video.read_bytes()
        dvc("repro", "download@kinetics", cwd=root)
        metrics = json.loads((root / "reports/kinetics/metrics/download.json").read_text())
        assert (metrics["downloaded"], metrics["failed"]) == (6, 0)
        assert sorted({name for name, _ in server.requests}) == [f"raw/vid{i}.mp4" for i in range(3)]
        assert "up to date" in dvc("status", "download@kinetics", cwd=root)
    finally:
        server.close()
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace(server.url + "/raw/{youtube_id}.mp4", "youtube"))
    status = dvc("status", "download@kinetics", cwd=root)
    assert "download@kinetics" in status and "modified:" in status and "datasets.kinetics" in status, status


def test_dvc_never_restores_an_inventory_from_its_run_cache(tmp_path):
    """`dvc commit` of a data stage run outside DVC (a SLURM job's) saves a run-cache entry
    unless its outputs are persist; a param changed and changed back then made `dvc repro`
    restore that run's inventory over the folder the last run left ("Stage is cached")."""
    root = make_project(tmp_path)
    dvc("repro", *TARGETS, cwd=root)
    params = (root / "params.yaml").read_text()
    old, new = params, params.replace(f"jpeg_quality: {OLD}", f"jpeg_quality: {NEW}")
    (root / "params.yaml").write_text(new)
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "stages/decode.py", "--dataset", "kinetics"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=300)
    dvc("commit", "-f", "decode@kinetics", cwd=root)
    (root / "params.yaml").write_text(old)
    assert "Running stage 'decode@kinetics'" in dvc("repro", *TARGETS, cwd=root)
    assert qualities(root) == [OLD] * 6
    (root / "params.yaml").write_text(new)
    output = dvc("repro", *TARGETS, cwd=root)
    assert "Running stage 'decode@kinetics'" in output and "cached" not in output
    assert qualities(root) == [NEW] * 6
