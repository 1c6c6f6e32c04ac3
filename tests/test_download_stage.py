"""The download stage as DVC runs it: `python stages/download.py --params ...` from the repo root."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import conftest
from avsf.io.atomic import TEMP_MARKER
from avsf.io.digest import file_digest
from avsf.io.media import probe, write_video
from pipeline.inventory import read_inventory
from pipeline.layout import Layout
from process_group import kill_group_when

REPO = conftest.REPO
LABELS = ["air drumming", "hurling (sport)", "yoga"]


def write_raw(path: Path, seed: int, seconds: float = 3.0, audio: bool = True) -> None:
    rng = np.random.default_rng(seed)
    frames = [np.full((48, 64, 3), rng.integers(0, 255, 3), np.uint8) for _ in range(int(seconds * 25))]
    sound = rng.uniform(-0.3, 0.3, (1, int(seconds * 16000))).astype(np.float32) if audio else None
    write_video(path, frames, 25, audio=sound, sample_rate=16000)


def make_world(root: Path, n_videos: int, segments_per_video: int = 1) -> dict:
    """Raw videos plus a train and a val manifest, with one missing and one corrupt source."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    rows = []
    for i in range(n_videos):
        youtube_id = f"vid-{i:03d}_x"
        write_raw(videos / f"{youtube_id}.mp4", i, audio=i % 3 != 0)
        for k in range(segments_per_video):
            rows.append((LABELS[i % 3], youtube_id, k, k + 1, "train" if i % 4 else "val"))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    rows += [("yoga", "broken", 0, 1, "train"), ("yoga", "nowhere", 0, 1, "val")]
    manifests = []
    for split in ("train", "val"):
        path = root / f"kinetics_{split}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            writer.writerows([*r, 0] for r in rows if r[4] == split)
        manifests.append(str(path))
    return {"videos": str(videos), "manifests": manifests, "rows": rows}


def write_params(root: Path, world: dict, cluster: str = "debug", **download) -> Path:
    """Params whose kinetics dataset is ``world`` (its manifests in one directory), the
    stages writing under ``root``."""
    manifests = [Path(m) for m in world["manifests"]]
    return conftest.write_params(root / "params.yaml", {
        "launch.cluster": cluster, "launch.log_dir": str(root / "logs"), "launch.resources.timeout_min": 5,
        "layout.data": str(root / "data"), "layout.reports": str(root / "reports"),
        "datasets.kinetics.annotations": str(manifests[0].parent),
        "datasets.kinetics.manifests": [m.name for m in manifests],
        "datasets.kinetics.source": world["videos"],
        **{f"download.{key}": value for key, value in {"backoff_s": 0.01, **download}.items()}})


def outputs(root: Path) -> tuple[Path, Path, Path]:
    """(clips, ledger, metrics) of download@kinetics under ``root``."""
    layout = Layout(root / "data", root / "reports")
    return layout.clips("kinetics"), layout.ledger("kinetics", "download"), layout.metrics("kinetics", "download")


def run_stage(params: Path, *args: str, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "stages/download.py", "--params", str(params), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env, **popen)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def frame_count(path: Path) -> int:
    with av.open(os.fspath(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("world")
    return root, make_world(root, 6)


def test_stage_makes_clips_index_ledger_and_metrics_then_skips_them(world, tmp_path):
    root, w = world
    params = write_params(tmp_path, w, cluster="local", shards=2, workers=2)
    first = run_stage(params)
    assert first.returncode == 0, first.stderr
    out, ledger_path, metrics_path = outputs(tmp_path)
    index = read_csv(out / "clips.csv")
    assert list(index[0]) == ["clip_id", "label", "youtube_id", "time_start", "time_end", "split", "path",
                              "duration", "notes"]
    expected = sorted(f"vid-{i:03d}_x_000000_000001" for i in range(6))
    assert sorted(r["clip_id"] for r in index) == expected
    assert {r["clip_id"]: r["label"] for r in index}["vid-001_x_000000_000001"] == "hurling (sport)"
    for r in index:
        assert r["path"] == r["clip_id"] + ".mp4"
        assert probe(out / r["path"]).duration == pytest.approx(1.0, abs=0.05)
        assert float(r["duration"]) == 1.0
    has_audio = {r["clip_id"]: "audio_copied" in json.loads(r["notes"] or "{}") for r in index}
    assert has_audio == {f"vid-{i:03d}_x_000000_000001": i % 3 != 0 for i in range(6)}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(e + ".mp4" for e in expected), *(e + ".json" for e in expected), "clips.csv", "classes.json",
         "inventory.csv"])
    # What DVC tracks of the folder (pipeline/inventory.py): each clip by the sha256 its record holds
    inventory = read_inventory(out)
    assert sorted(inventory) == sorted(p.name for p in out.iterdir() if p.name != "inventory.csv")
    for e in expected:
        record = json.loads((out / f"{e}.json").read_text())
        clip = inventory[f"{e}.mp4"]
        assert clip["identity"] == f"sha256:{record['sha256']}" == f"sha256:{file_digest(out / f'{e}.mp4')}"
        assert int(clip["bytes"]) == (out / f"{e}.mp4").stat().st_size
        assert inventory[f"{e}.json"]["identity"] == f"sha256:{file_digest(out / f'{e}.json')}"
    # Every label of the manifests, "yoga" too, though its only good video is vid-002.
    assert json.loads((out / "classes.json").read_text()) == sorted(LABELS)

    ledger = read_csv(ledger_path)
    assert sorted((r["id"], r["stage"], r["reason"]) for r in ledger) == [
        ("broken_000000_000001", "download", "corrupt_container"),
        ("nowhere_000000_000001", "download", "missing_source"),
    ]
    metrics = json.loads(metrics_path.read_text())
    assert {k: metrics[k] for k in ("downloaded", "skipped_existing", "failed", "total_rows", "cut_short")} == {
        "downloaded": 6, "skipped_existing": 0, "failed": 2, "total_rows": 8, "cut_short": 0}
    assert metrics["notes"] == {"audio_copied": 4}
    assert metrics["failed_by_reason"]["corrupt_container"] == 1
    assert metrics["failed_by_reason"]["missing_source"] == 1
    assert sum(metrics["failed_by_reason"].values()) == 2
    assert metrics["clips_per_s"] > 0 and metrics["seconds"] > 0
    assert "download: 8 rows: 6 downloaded, 0 already present, 2 failed" in first.stderr
    assert "job" in first.stderr and "log" in first.stderr  # where each job's log is

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    second = run_stage(params, "--set", "launch.cluster=debug")
    assert second.returncode == 0, second.stderr
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["downloaded"], metrics["skipped_existing"], metrics["failed"]) == (0, 6, 2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == mtimes
    assert read_csv(out / "clips.csv") == index
    assert read_inventory(out) == inventory


def test_stage_fails_only_when_nothing_could_be_fetched(world, tmp_path):
    root, w = world
    empty = tmp_path / "empty"
    empty.mkdir()
    params = write_params(tmp_path, {**w, "videos": str(empty)})
    result = run_stage(params)
    assert result.returncode == 1
    _, ledger_path, metrics_path = outputs(tmp_path)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: download: none of 8 manifest rows gave a clip; see {ledger_path}")
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["failed"], metrics["failed_by_reason"]["missing_source"]) == (8, 8)
    assert not (outputs(tmp_path)[0] / "inventory.csv").exists()  # no clip: DVC sees no output


@pytest.mark.parametrize("override, message", [
    ("download.workers=0", "download.workers: Input should be greater than 0 (got 0)"),
    ("download.wrokers=2", "download.wrokers: unknown key; allowed: keep_raw, workers,"),
    ("datasets.kinetics.source=ftp://host/v",
     "datasets.kinetics.source: must be a directory, a file:// or http(s):// URL"),
    ("download.retries=many", "download.retries: Input should be a valid integer"),
])
def test_bad_params_exit_2_with_one_line_and_write_nothing(world, tmp_path, override, message):
    root, w = world
    params = write_params(tmp_path, w)
    result = conftest.invoke_stage("download", "--params", str(params), "--set", override, cwd=REPO)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_manifest_and_missing_youtube_extra_are_one_line_errors(world, tmp_path):
    root, w = world
    params = write_params(tmp_path, w)
    result = run_stage(params, "--set", "datasets.kinetics.manifests=[absent.csv]")
    assert result.returncode == 1
    absent = Path(w["manifests"][0]).parent / "absent.csv"
    assert result.stderr.strip().splitlines()[-1] == f"error: datasets.kinetics.annotations: {absent} is missing"

    hide = tmp_path / "hide"  # a yt_dlp that cannot be imported, whether or not it is installed
    hide.mkdir()
    (hide / "yt_dlp.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    result = run_stage(params, "--set", "datasets.kinetics.source=youtube", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: datasets.kinetics.source: download.source is 'youtube' but yt-dlp is not installed; "
        "install the extra: pip install avsf[youtube]")
    assert not outputs(tmp_path)[0].exists()


@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_kill_9_mid_write_then_rerun_finishes(tmp_path, cluster):
    """debug: the work runs in the stage's process; local: in submitit job processes. The
    stage's whole process group gets SIGKILL while a clip is being written."""
    w = make_world(tmp_path / "world", 12, segments_per_video=2)  # 24 clips, 2 failures
    params = write_params(tmp_path, w, cluster=cluster, workers=1, shards=1)
    out, _, metrics_path = outputs(tmp_path)
    proc = subprocess.Popen([sys.executable, "stages/download.py", "--params", str(params)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def mid_write() -> bool:  # some clips finished, one half-written
        names = [p.name for p in out.glob("*")] if out.is_dir() else []
        done = [n for n in names if not n.startswith(".")]
        return len(done) >= 2 and any(n.startswith(".") and TEMP_MARKER in n for n in names)

    kill_group_when(proc, mid_write, timeout=60, poll_s=0.002)
    assert proc.returncode == -signal.SIGKILL

    left = sorted(p.name for p in out.iterdir())
    temporaries = [n for n in left if n.startswith(".")]
    finished = [n for n in left if not n.startswith(".") and n.endswith(".mp4")]
    assert temporaries and finished and "clips.csv" not in left
    for name in finished:  # every clip under its final name is whole, and has its record
        assert frame_count(out / name) == 25, name
        assert (out / name).with_suffix(".json").is_file(), name
    assert not metrics_path.exists()

    rerun = run_stage(params)
    assert rerun.returncode == 0, rerun.stderr
    assert f"removed {len(temporaries)} temporaries" in rerun.stderr
    metrics = json.loads(metrics_path.read_text())
    assert metrics["skipped_existing"] == len(finished)
    assert metrics["downloaded"] + metrics["skipped_existing"] == 24
    assert metrics["failed"] == 2 and metrics["total_rows"] == 26
    clips = sorted(p.name for p in out.iterdir())
    paths = [r["path"] for r in read_csv(out / "clips.csv")]
    assert clips == sorted(["clips.csv", "classes.json", "inventory.csv", *paths,
                            *(p.replace(".mp4", ".json") for p in paths)])
    assert len(paths) == 24
    for name in clips:
        if name.endswith(".mp4"):
            assert frame_count(out / name) == 25, name


# --------------------------------------------------------------------------- what clips.csv and classes.json say


def write_manifest(path: Path, rows: list[tuple]) -> str:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows([*r, 0] for r in rows)
    return str(path)


def test_class_indices_come_from_the_manifests_whatever_fails(tmp_path):
    """Every clip of "abseiling" fails, and every row of "archery" is unusable (bad_manifest_row):
    the store's classes still start with them, so class 2 is "yoga" whatever failed."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_raw(videos / "v1.mp4", 1)
    write_raw(videos / "v2.mp4", 2)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    manifest = write_manifest(tmp_path / "train.csv", [
        ("abseiling", "broken", 0, 1, "train"), ("abseiling", "nowhere", 0, 1, "train"),
        ("archery", "v1", 3, 1, "train"), ("archery", "../v2", 0, 1, "train"),
        ("yoga", "v1", 0, 1, "train"), ("zumba", "v2", 0, 1, "train")])
    params = write_params(tmp_path, {"videos": str(videos), "manifests": [manifest]})
    assert run_stage(params).returncode == 0
    classes = ["abseiling", "archery", "yoga", "zumba"]
    clips, _, metrics_path = outputs(tmp_path)
    assert json.loads((clips / "classes.json").read_text()) == classes
    metrics = json.loads(metrics_path.read_text())
    assert metrics["failed_by_reason"]["bad_manifest_row"] == 2
    decode = subprocess.run([sys.executable, "stages/decode.py", "--params", str(params)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert decode.returncode == 0, decode.stderr
    store = Layout(tmp_path / "data", tmp_path / "reports").frames("kinetics")
    assert json.loads((store / "classes.json").read_text()) == classes


def test_a_param_that_changes_clips_makes_them_again(world, tmp_path):
    root, w = world
    params = write_params(tmp_path, w)
    assert run_stage(params).returncode == 0
    out, _, metrics_path = outputs(tmp_path)
    before = {p.name: p.read_bytes() for p in out.glob("*.mp4")}
    assert run_stage(params, "--set", "download.crf=30").returncode == 0
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["downloaded"], metrics["skipped_existing"]) == (6, 0)
    after = {p.name: p.read_bytes() for p in out.glob("*.mp4")}
    assert after.keys() == before.keys() and all(after[n] != before[n] for n in before)
    # A param that does not change clips keeps them.
    assert run_stage(params, "--set", "download.crf=30", "--set", "download.retries=5").returncode == 0
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["downloaded"], metrics["skipped_existing"]) == (0, 6)


def test_clip_index_says_how_long_each_clip_is_and_what_was_noted(tmp_path):
    """A segment past its video's end (0-6 s of 5.28 s), a file cut off mid-way (claiming
    4 s, decoding about 1.3), and two rows of one video that differ only in a fraction."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "short.mp4", [np.full((48, 64, 3), i, np.uint8) for i in range(132)], 25)  # 5.28 s
    write_raw(videos / "frac.mp4", 3, seconds=4.0)
    write_raw(tmp_path / "whole.mp4", 4, seconds=4.0)
    with av.open(str(tmp_path / "whole.mp4")) as src, av.open(str(tmp_path / "fast.mp4"), "w",
                                                             options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = (tmp_path / "fast.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 3])
    manifest = write_manifest(tmp_path / "train.csv", [
        ("a", "short", 0, 6, "train"), ("a", "frac", 1, 3, "train"), ("a", "frac", 1.5, 3.5, "train"),
        ("a", "cut", 0, 4, "train")])
    params = write_params(tmp_path, {"videos": str(videos), "manifests": [manifest]}, min_segment_fraction=0.2)
    result = run_stage(params)
    assert result.returncode == 0, result.stderr
    clips, _, metrics_path = outputs(tmp_path)
    rows = {r["clip_id"]: r for r in read_csv(clips / "clips.csv")}
    assert set(rows) == {"short_000000_000006", "frac_000001_000003", "frac_000001.5_000003.5", "cut_000000_000004"}
    short = rows["short_000000_000006"]
    assert (short["time_end"], float(short["duration"])) == ("6", 5.28)
    assert json.loads(short["notes"]) == {"cut_short_s": 0.72}
    assert (rows["frac_000001.5_000003.5"]["time_start"], rows["frac_000001.5_000003.5"]["duration"]) == ("1.5", "2")
    cut = rows["cut_000000_000004"]
    assert json.loads(cut["notes"])["truncated"] == 1 and 0.8 <= float(cut["duration"]) <= 2.0
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["downloaded"], metrics["failed"], metrics["cut_short"]) == (4, 0, 2)
    assert metrics["notes"]["truncated"] == 1 and metrics["notes"]["cut_short_s"] == 2
    assert "2 cut short" in result.stderr


def test_download_needs_neither_h5py_nor_the_store():
    """Download counts its notes without importing the store's code (and h5py with it), and
    DVC does not rerun it when the store's stages' shared code changes."""
    assert conftest.loaded_modules("pipeline.download", ("h5py", "avsf.data.store", "pipeline.shards")) == []
    deps = conftest.stage_deps("download")
    assert "pipeline/shards.py" not in deps and "avsf/data/store.py" not in deps and "pipeline/notes.py" in deps
