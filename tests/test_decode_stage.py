"""The decode and spectrogram stages on a clip set holding every robustness case of issue 3."""

from __future__ import annotations

import hashlib
import json
import math
import os

import h5py
import numpy as np
import pytest

from avsf.data.download import ClipSettings, LocalSource, TrimSettings, download_video_clips
from avsf.data.kinetics import ClipRecord, Segment, clip_record_path, write_clip_index
from avsf.data.ledger import Failure, read_ledger, write_ledger
from avsf.data.store import INDEX_NAME, StoreReader, read_index, read_meta, store_hashes
from avsf.io.media import write_video
from clip_factory import KINETICS, ClipSpec, build_store, store_params, write_clip, write_clips_dir, write_garbled
from conftest import loaded_modules, run_stage, stage_deps
from pipeline.decode import run_decode
from pipeline.inventory import INVENTORY_NAME, read_inventory
from pipeline.spectrogram import run_spectrogram

SPECS = [
    ClipSpec("good", label="a"),
    ClipSpec("pal", fps=25.0, channels=2, sample_rate=48000, label="b"),
    ClipSpec("silent", audio_seconds=0, label="a"),
    ClipSpec("short", audio_seconds=1.0, label="b", split="val"),
    ClipSpec("vfr", seconds=1.0, timestamps=[0.0, 0.1, 0.15, 0.5, 0.9], audio_seconds=0, split="val"),
    ClipSpec("odd", size=(33, 17), pix_fmt="yuv444p", label="b"),
    ClipSpec("rotated", rotation=90, label="a"),
]
BROKEN = {"corrupt": "corrupt_container", "garbled": "no_frames", "gone": "missing_clip"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Clips of every kind plus three broken ones, a download ledger, and both stages run once."""
    root = tmp_path_factory.mktemp("stage")
    records = write_clips_dir(root, SPECS)
    clips_dir = root / "data" / "kinetics" / "clips"
    (clips_dir / "corrupt_000000_000002.mp4").write_bytes(b"\x00garbage" * 64)
    template = write_clip(root / "template.mp4", ClipSpec("t", seconds=1.0, audio_seconds=0))
    write_garbled(clips_dir / "garbled_000000_000002.mp4", template)
    records += [ClipRecord(f"{name}_000000_000002", "a", name, 0, 2, "train", f"{name}_000000_000002.mp4")
                for name in BROKEN]
    write_clip_index(clips_dir / "clips.csv", records)
    write_ledger(root / "data" / "kinetics" / "ledger" / "download.csv",
                 [Failure("lost_000000_000002", "download", "missing_source", "not in the source")])
    _, params = store_params(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        run_decode(params)
        run_spectrogram(params)
    return root, params


def load(root, path):
    return json.loads((root / path).read_text())


def test_decode_metrics_count_clips_failures_and_notes(built):
    root, params = built
    metrics = load(root, KINETICS.metrics("kinetics", "decode"))
    assert metrics["clips"] == len(SPECS)
    assert metrics["failed"] == 3
    assert metrics["failed_by_reason"] == {reason: 1 for reason in sorted(BROKEN.values())}
    assert metrics["upstream_failures"] == 1
    assert metrics["without_audio"] == 2  # silent, vfr
    assert metrics["notes"] == {"audio_padded_s": 1, "rotation": 1, "variable_frame_rate": 1}
    entries = {e.youtube_id: e for e in read_index(root / KINETICS.frames("kinetics") / INDEX_NAME)}
    # The VFR clip's last frame (at 0.9 s) lasts as long as its container says.
    vfr = entries["vfr"].num_frames
    assert 27 <= vfr <= 33
    assert metrics["frames"] == sum(e.num_frames for e in entries.values()) == 6 * 60 + vfr
    assert metrics["hours"] == pytest.approx((6 * 2.0 + vfr / 30) / 3600)
    assert metrics["shards"] == 5 and metrics["source_seconds_per_s"] > 0  # 10 clips, 2 per shard


def test_ledger_carries_download_rows_then_decode_rows(built):
    root, params = built
    rows = read_ledger(root / KINETICS.ledger("kinetics", "decode"))
    assert rows[0] == Failure("lost_000000_000002", "download", "missing_source", "not in the source")
    assert {(r.id.split("_")[0], r.stage, r.reason) for r in rows[1:]} == {
        (name, "decode", reason) for name, reason in BROKEN.items()}
    spectrogram_rows = read_ledger(root / KINETICS.ledger("kinetics", "spectrogram"))
    assert spectrogram_rows == rows  # the spectrogram stage had no failures of its own


def test_store_holds_each_clip_with_its_attributes(built):
    root, params = built
    reader = StoreReader(root / KINETICS.frames("kinetics"), root / KINETICS.logmel("kinetics"))
    by_name = {e.youtube_id: e for e in reader.entries}
    assert set(by_name) == {s.name for s in SPECS}
    assert json.loads((root / KINETICS.frames("kinetics") / "classes.json").read_text()) == ["a", "b"]
    attrs = reader.attrs(by_name["rotated"])
    assert (attrs["height"], attrs["width"], attrs["fps"], attrs["has_audio"]) == (43, 32, 30.0, True)
    assert reader.attrs(by_name["pal"])["source_fps"] == pytest.approx(25.0)
    assert json.loads(reader.attrs(by_name["short"])["notes"])["audio_padded_s"] == pytest.approx(1.0, abs=0.08)
    odd = reader.attrs(by_name["odd"])
    assert (odd["height"], odd["width"]) == (32, round(33 * 32 / 17))
    for entry in reader.entries:
        frames = reader.frames(entry, 0, entry.num_frames)
        assert len(frames) == entry.num_frames == round(entry.duration * 30)
        audio = reader.audio(entry)
        assert (audio is not None) == entry.has_audio
        if entry.has_audio:
            assert audio.shape == (round(entry.duration * 16000),)
            assert reader.logmel_length(entry) == 1 + len(audio) // 256
        else:
            assert reader.logmel(entry, 0, 10) is None


def test_spectrogram_store_and_training_stats(built):
    root, params = built
    reader = StoreReader(root / KINETICS.frames("kinetics"), root / KINETICS.logmel("kinetics"))
    values = []
    for entry in reader.entries:
        rows = reader.logmel(entry, 0, 10**9)
        if rows is not None:
            assert rows.dtype == np.float16 and rows.shape[1] == 80
            assert np.isfinite(rows).all() and rows.min() >= np.float16(math.log(1e-8))
            if entry.split == "train":
                values.append(rows.astype(np.float64).ravel())
    values = np.concatenate(values)
    stats = reader.stats()
    assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(values.std())
    assert stats["clips"] == 4 and stats["split"] == "train"  # good, pal, odd, rotated
    metrics = load(root, KINETICS.metrics("kinetics", "spectrogram"))
    assert (metrics["with_audio"], metrics["without_audio"], metrics["failed"]) == (5, 2, 0)
    assert metrics["mean"] == stats["mean"]


def test_a_muted_track_is_marked_silent_and_left_out_of_the_statistics(tmp_path):
    """An audio stream of zeros (a muted upload) gives log(1e-8) everywhere: in the training
    split's statistics it dragged the mean down and blew the std up. The stats of a store
    holding one are those of the same store without it; the clip is kept, marked and counted."""
    sounding = [ClipSpec("tone", label="a"), ClipSpec("noisy", noise=0.05, label="b"),
                ClipSpec("other", label="b", split="val", tone_hz=0)]
    stores = {name: build_store(tmp_path / name, specs, {"decode.clips_per_shard": 1}) for name, specs in
              {"without": sounding, "with": [*sounding, ClipSpec("muted", tone_hz=0, label="a")]}.items()}
    stats = {name: json.loads((logmel_dir / "stats.json").read_text()) for name, (_, logmel_dir) in stores.items()}
    assert stats["with"]["mean"] == pytest.approx(stats["without"]["mean"], rel=1e-9)
    assert stats["with"]["std"] == pytest.approx(stats["without"]["std"], rel=1e-9)
    assert stats["with"]["values"] == stats["without"]["values"] and stats["with"]["clips"] == 2
    reader = StoreReader(*stores["with"])
    silent = {e.clip_id.split("_")[0]: reader.attrs(e, "logmel")["silent"] for e in reader.entries}
    assert silent == {"tone": False, "noisy": False, "other": True, "muted": True}
    metrics = json.loads((tmp_path / "with" / "reports/kinetics/metrics/spectrogram.json").read_text())
    assert (metrics["with_audio"], metrics["silent"], metrics["stats_clips"]) == (4, 2, 2)


def test_rerun_keeps_complete_shards_and_a_changed_param_rebuilds(built, tmp_path, monkeypatch):
    """A changed decode param rebuilds every frame shard; one that leaves the audio as it is
    (jpeg_quality) rebuilds no log-mel shard, one that moves it (fps) rebuilds them all."""
    root, params = built
    monkeypatch.chdir(root)
    before = store_hashes(KINETICS.frames("kinetics"))
    logmel_before = store_hashes(KINETICS.logmel("kinetics"))
    inventories = {store: (root / KINETICS.frames("kinetics").parent / store / INVENTORY_NAME) for store in ("frames", "logmel")}
    inventories_before = {store: path.read_bytes() for store, path in inventories.items()}
    shard = root / KINETICS.frames("kinetics") / "shard-00000.h5"
    stamp = shard.stat().st_mtime_ns
    run_decode(params)
    assert load(root, KINETICS.metrics("kinetics", "decode"))["shards_reused"] == 5
    assert shard.stat().st_mtime_ns == stamp and store_hashes(KINETICS.frames("kinetics")) == before
    _, lower = store_params(tmp_path, {"decode.jpeg_quality": 50})
    run_decode(lower)
    assert load(root, KINETICS.metrics("kinetics", "decode"))["shards_reused"] == 0
    after = store_hashes(KINETICS.frames("kinetics"))
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)
    run_spectrogram(lower)
    assert load(root, KINETICS.metrics("kinetics", "spectrogram"))["shards_reused"] == 4
    assert store_hashes(KINETICS.logmel("kinetics")) == logmel_before
    # What DVC tracks: the frames' inventory changed, the log-mel one did not (nothing after it reruns)
    assert inventories["frames"].read_bytes() != inventories_before["frames"]
    assert inventories["logmel"].read_bytes() == inventories_before["logmel"]
    (tmp_path / "fps").mkdir()
    _, slower = store_params(tmp_path / "fps", {"decode.fps": 15})
    run_decode(slower)
    run_spectrogram(slower)
    assert load(root, KINETICS.metrics("kinetics", "spectrogram"))["shards_reused"] == 0
    run_decode(params)  # back to the module's store for the other tests
    run_spectrogram(params)
    assert store_hashes(KINETICS.frames("kinetics")) == before
    assert store_hashes(KINETICS.logmel("kinetics")) == logmel_before
    assert {store: path.read_bytes() for store, path in inventories.items()} == inventories_before


def test_each_store_lists_its_files_in_an_inventory_with_what_made_them(built):
    """The inventory DVC tracks instead of the store's bytes (pipeline/inventory.py): every file
    with its size; a shard by the fingerprint its meta records, small files by their sha256."""
    root, _ = built
    for store in (KINETICS.frames("kinetics"), KINETICS.logmel("kinetics")):
        directory = root / store
        rows = read_inventory(directory)
        files = sorted(p.name for p in directory.iterdir() if p.name != INVENTORY_NAME)
        assert list(rows) == files and any(name.startswith("shard-") for name in files)  # sorted
        for name, row in rows.items():
            path = directory / name
            assert int(row["bytes"]) == path.stat().st_size
            if name.startswith("shard-"):
                assert row["identity"] == f"fingerprint:{read_meta(path)['fingerprint']}"
            else:
                assert row["identity"] == f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def test_shards_follow_what_made_each_clip_not_its_mtime(tmp_path, monkeypatch):
    """``dvc checkout``, ``cp`` or ``rsync`` without -t give clips new mtimes: their shards are
    kept, as the download records beside the clips say nothing changed. A clip made again
    (other bytes, another record) rebuilds its shard only; a clip without a record is judged
    on its size and mtime."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for k, name in enumerate(["va", "vb"]):
        write_video(videos / f"{name}.mp4", [np.full((48, 64, 3), 40 * k + i, np.uint8) for i in range(50)], 25)
    clips_dir = tmp_path / "data" / "kinetics" / "clips"
    segments = [Segment(name, 0, 1, "train", "a") for name in ("va", "vb")]

    def download(segment: Segment, crf: int) -> None:
        clip_settings = ClipSettings(clips_dir, tmp_path / "cache", trim=TrimSettings(crf=crf))
        [outcome] = download_video_clips(segment.youtube_id, [segment], LocalSource(videos), clip_settings)
        assert outcome.status == "downloaded"

    for segment in segments:
        download(segment, crf=18)
    write_clip_index(clips_dir / "clips.csv", [ClipRecord.for_segment(s, f"{s.clip_id}.mp4") for s in segments])
    _, params = store_params(tmp_path, {"decode.clips_per_shard": 1})
    monkeypatch.chdir(tmp_path)
    run_decode(params)

    def reused() -> int:
        run_decode(params)
        return json.loads((tmp_path / KINETICS.metrics("kinetics", "decode")).read_text())["shards_reused"]

    clip_a, clip_b = (clips_dir / f"{s.clip_id}.mp4" for s in segments)
    for clip in (clip_a, clip_b):
        copy = clip.with_name("copy.tmp")
        copy.write_bytes(clip.read_bytes())  # as cp does: new mtime, same bytes
        os.replace(copy, clip)
        os.utime(clip, ns=(1, 1))
    assert reused() == 2
    download(segments[0], crf=30)  # clip a is made again, with other bytes and another record
    assert reused() == 1
    clip_record_path(clip_b).unlink()
    assert reused() == 1  # the identity of b changed form once
    os.utime(clip_b, ns=(2, 2))
    assert reused() == 1  # without its record, b's mtime is all there is


@pytest.mark.parametrize("stage, version, shards", [("decode", "pipeline.decode.DECODER_VERSION", 5),
                                                   ("spectrogram", "pipeline.spectrogram.LOGMEL_VERSION", 4)])
def test_shards_from_older_code_are_rebuilt(built, monkeypatch, stage, version, shards):
    root, params = built
    run = {"decode": run_decode, "spectrogram": run_spectrogram}[stage]
    metrics = KINETICS.metrics("kinetics", stage)
    monkeypatch.chdir(root)
    monkeypatch.setattr(version, 1)
    run(params)
    assert load(root, metrics)["shards_reused"] == 0
    monkeypatch.undo()
    monkeypatch.chdir(root)
    run(params)
    assert load(root, metrics)["shards_reused"] == 0  # built by "version 1"
    run(params)
    assert load(root, metrics)["shards_reused"] == shards


def test_stage_scripts_validate_params_and_run_through_submitit(built, tmp_path):
    root, _ = built
    bad = run_stage("decode", "--set", "decode.short_side=0", cwd=root, timeout=120)
    assert bad.returncode == 2 and "decode.short_side" in bad.stderr
    help_text = run_stage("decode", "--help", cwd=root, timeout=120).stdout
    assert "decode.short_side" in help_text and "--set" in help_text
    # The real launcher (local subprocess jobs), on the two good clips.
    write_clips_dir(tmp_path, SPECS[:2])
    path, _ = store_params(tmp_path, {"launch.cluster": "local", "decode.clips_per_shard": 1})
    done = run_stage("decode", "--params", str(path), cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert len(read_index(tmp_path / "data/kinetics/store/frames" / INDEX_NAME)) == 2
    with h5py.File(tmp_path / "data/kinetics/store/frames/shard-00001.h5", "r") as f:
        assert list(f) == [SPECS[1].clip_id]


def test_a_still_picture_or_a_clip_that_cannot_be_stored_does_not_stop_its_shard(tmp_path, monkeypatch):
    """Cover art with music (every JPEG the same length), a one-frame clip, and a clip index
    naming one clip twice (its second group cannot be made): each clip is stored or ledgered
    on its own, and the shard is whole."""
    clips_dir = tmp_path / "data" / "kinetics" / "clips"
    clips_dir.mkdir(parents=True)
    art = np.full((48, 64, 3), 90, np.uint8)
    tone = (0.1 * np.sin(np.arange(32000) * 2 * np.pi * 440 / 16000))[None].astype(np.float32)
    write_video(clips_dir / "art_000000_000002.mp4", [art] * 50, 25, audio=tone, sample_rate=16000)
    write_video(clips_dir / "one_000000_000001.mp4", [art], 25)
    write_clip(clips_dir / "good_000000_000002.mp4", ClipSpec("good"))
    records = [ClipRecord(f"{name}_000000_{end:06d}", "a", name, 0, end, "train", f"{name}_000000_{end:06d}.mp4")
               for name, end in (("art", 2), ("one", 1), ("good", 2), ("good", 2))]
    write_clip_index(clips_dir / "clips.csv", records)
    _, params = store_params(tmp_path, {"decode.clips_per_shard": 4})
    monkeypatch.chdir(tmp_path)
    run_decode(params)
    entries = {e.clip_id: e for e in read_index(tmp_path / KINETICS.frames("kinetics") / INDEX_NAME)}
    assert sorted(entries) == ["art_000000_000002", "good_000000_000002", "one_000000_000001"]
    assert (entries["art_000000_000002"].num_frames, entries["one_000000_000001"].num_frames) == (60, 1)
    reader = StoreReader(tmp_path / KINETICS.frames("kinetics"))
    assert len({f.tobytes() for f in reader.frames(entries["art_000000_000002"], 0, 60)}) == 1
    [failure] = [r for r in read_ledger(tmp_path / KINETICS.ledger("kinetics", "decode")) if r.stage == "decode"]
    assert (failure.id, failure.reason) == ("good_000000_000002", "unexpected_error")
    assert "already exists" in failure.detail


def test_loaders_and_the_spectrogram_stage_need_no_ingest_code():
    """A DataLoader worker imports neither PyAV nor the decoder; the spectrogram stage does
    not import decode's orchestration, and DVC does not rerun it when that changes."""
    assert loaded_modules("avsf.data.clip_dataset, pipeline.spectrogram",
                          ("av", "avsf.data.decode", "pipeline.decode")) == []
    deps = stage_deps("spectrogram")
    assert "pipeline/decode.py" not in deps and "avsf/data/decode.py" not in deps and "pipeline/shards.py" in deps


def test_decode_and_download_jobs_do_not_import_torch():
    """A data job validates params, whose schema reads the model configs, but needs no torch: at
    Kinetics scale a decode is 8,000 jobs, each of which paid a second and 180 MB for it."""
    assert loaded_modules("stages.decode, stages.download, pipeline.decode, pipeline.download, "
                          "avsf.models", ("torch",)) == []
