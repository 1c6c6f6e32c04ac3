"""``python -m avsf.predict``: a video of one's own scores exactly as the same video would
have as a test clip of the store the pipeline's decode and spectrogram stages build, with
the checkpoint's classes, settings and audio statistics; no-audio notes, unreadable videos
and unusable checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from avsf.data.clip_dataset import ClipDataset
from avsf.evaluate.views import predict_views
from avsf.models import build_model
from avsf.models.serialize import config_to_dict
from avsf.predict import DataRecord, load_predictor, main, predict_video
from clip_factory import STORE_OVERRIDES, ClipSpec, build_store
from conftest import REPO, loaded_modules, write_params
from pipeline.models import config_from_params
from pipeline.params import load_params
from pipeline.runs import training_run
from pipeline.train import data_record, train_store

CLASSES = ["abseiling", "bowling", "clapping", "dancing", "eating", "fencing", "golfing"]
# The store's two videos: one with sound (broadband, so its log-mel varies), one without an
# audio stream; each alone in its split, so the reference batches hold that video's views only.
TONE = ClipSpec("tone", seconds=2.0, size=(64, 48), noise=0.05, tone_hz=700.0, split="train")
MUTE = ClipSpec("mute", seconds=2.0, size=(48, 64), audio_seconds=0, split="val", label="b")
OVERRIDES = {**STORE_OVERRIDES, "model.num_classes": len(CLASSES), "dataset.test_clips": 2, "dataset.test_crops": 3}
VIEWS = 2 * 3


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The pipeline's store of TONE and MUTE, and a checkpoint per architecture whose data
    record is the one the train stage writes for that store."""
    root = tmp_path_factory.mktemp("predict")
    frames, logmel = build_store(root, [TONE, MUTE], OVERRIDES)
    checkpoints = {arch: write_checkpoint(root, arch) for arch in ("avslowfast", "slowfast", "audio")}
    return {"root": root, "frames": frames, "logmel": logmel, "ckpt": checkpoints,
            "tone": root / "data/kinetics/clips" / f"{TONE.clip_id}.mp4", "mute": root / "data/kinetics/clips" / f"{MUTE.clip_id}.mp4"}


def write_checkpoint(root: Path, arch: str, with_data: bool = True, overrides: dict | None = None,
                     name: str = "", logmel: dict | None = None) -> Path:
    """A tiny untrained ``arch`` model as the train stage saves it: model_state, model_config
    and the data record of the store under ``root`` (params with ``overrides``; ``logmel``:
    log-mel settings as if the store had been made with them). Its classifier is drawn
    large (std 1) so that the classes' scores differ visibly and depend on the video."""
    params = load_params(write_params(root / f"params-{arch}{name}.yaml",
                                      {**OVERRIDES, "model.arch": arch, **(overrides or {})}))
    cfg = config_from_params(params.model)
    torch.manual_seed(0)
    model = build_model(cfg)
    for p in model.head.parameters():
        p.data.normal_(0, 1)
    state = {"epoch": 0, "model_state": model.state_dict(), "model_config": config_to_dict(cfg)}
    if with_data:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)  # the store's paths in params are relative to the project
            run = training_run(params)
            store = train_store(run)
            if logmel:
                store = replace(store, spectrogram={**store.spectrogram, **logmel})
            state["data"] = data_record(run, CLASSES, store)
    path = root / f"{arch}{'' if with_data else '-no-data'}{name}.pyth"
    torch.save(state, path)
    return path


def store_scores(world: dict, arch: str, spec: ClipSpec, **sampling) -> np.ndarray:
    """``predict_views`` over the pipeline's store: the video's scores as a stored test clip."""
    predictor = load_predictor(world["ckpt"][arch])
    cfg = predictor.cfg
    dataset = ClipDataset(world["frames"], world["logmel"] if cfg.audio is not None else None, spec.split, "test",
                          replace(predictor.data.sampling, **sampling))
    assert [e.clip_id for e in dataset.entries] == [spec.clip_id]
    result = predict_views(predictor.model, cfg, dataset, batch_size=8)
    assert result.views.tolist() == [len(dataset)] and result.failures == []
    return result.scores[0]


def run_predict(*args: str) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_checkpoint_holds_the_stores_settings(world):
    data = load_predictor(world["ckpt"]["avslowfast"]).data
    assert isinstance(data, DataRecord) and data.classes == CLASSES
    assert (data.decode.short_side, data.decode.sample_rate) == (32, 16000)
    assert (data.sampling.test_clips, data.sampling.test_crops, data.sampling.spec_frames) == (2, 3, 32)
    stats = json.loads((world["logmel"] / "stats.json").read_text())
    assert data.audio_stats == {"mean": stats["mean"], "std": stats["std"]}
    assert load_predictor(world["ckpt"]["slowfast"]).data.logmel is None


@pytest.mark.parametrize("arch", ["avslowfast", "slowfast"])
def test_scores_equal_the_store_views_of_the_same_video(world, arch):
    predictor = load_predictor(world["ckpt"][arch])
    ours = predict_video(predictor, world["tone"])
    expected = store_scores(world, arch, TONE)
    assert ours.error is None and ours.views == VIEWS
    np.testing.assert_array_equal(ours.scores, expected)
    assert expected.sum() == pytest.approx(1.0) and np.ptp(expected) > 0.05  # a real, uneven distribution
    # The scores depend on the video: the other one gets others.
    assert np.abs(predict_video(predictor, world["mute"]).scores - expected).max() > 1e-3
    # --clips and --crops change the views as they would the store's, and the CLI prints those scores.
    printed = run_predict(world["tone"], "--checkpoint", world["ckpt"][arch], "--clips", 1, "--crops", 1,
                          "--top", len(CLASSES), "--json", "--device", "cpu")
    assert printed.exit_code == 0, printed.output
    [record] = json.loads(printed.stdout)
    assert record["views"] == 1 and record["path"] == str(world["tone"])
    one_view = store_scores(world, arch, TONE, test_clips=1, test_crops=1)
    assert {t["class"]: t["score"] for t in record["top"]} == dict(zip(CLASSES, one_view.tolist()))


def test_the_record_carries_the_runs_temporal_sampling_and_log_mel_settings(world):
    """PySlowFast's frame picks (a run from an official checkpoint) and the authors' log-mel
    settings travel in the checkpoint's record, so predict scores a video as that run's
    test views do."""
    path = write_checkpoint(world["root"], "slowfast", overrides={"dataset.temporal_sampling": "pyslowfast"},
                            name="-pyslowfast")
    predictor = load_predictor(path)
    assert predictor.data.sampling.temporal_sampling == "pyslowfast"
    ours = predict_video(predictor, world["tone"])
    views = ClipDataset(world["frames"], None, TONE.split, "test", predictor.data.sampling)
    expected = predict_views(predictor.model, predictor.cfg, views, batch_size=8).scores[0]
    np.testing.assert_array_equal(ours.scores, expected)
    strided = predict_video(load_predictor(world["ckpt"]["slowfast"]), world["tone"])  # the same weights
    assert np.abs(ours.scores - strided.scores).max() > 1e-4
    authors = write_checkpoint(world["root"], "avslowfast", name="-authors", logmel={"mel_norm": "slaney", "center": False})
    logmel = load_predictor(authors).data.logmel
    assert (logmel.mel_norm, logmel.center, logmel.first_row_s) == ("slaney", False, 0.016)


def test_the_printed_top_5_are_the_highest_classes_in_order(world):
    expected = store_scores(world, "avslowfast", TONE)
    printed = run_predict(world["tone"], "--checkpoint", world["ckpt"]["avslowfast"])
    assert printed.exit_code == 0 and printed.stderr == ""
    path, *rows = printed.stdout.splitlines()
    assert path == str(world["tone"])
    ranked = np.argsort(-expected)[:5]
    assert [row.split() for row in rows] == [[f"{rank}.", CLASSES[i], f"{expected[i]:.3f}"]
                                             for rank, i in enumerate(ranked, 1)]
    assert len({expected[i] for i in ranked}) == 5  # no ties: the order is the scores' own


def test_no_audio_track_is_said_for_models_that_hear_and_only_for_them(world):
    note = "no audio track: the audio pathway gets silence; the scores rest on the frames alone"
    av = run_predict(world["mute"], world["tone"], "--checkpoint", world["ckpt"]["avslowfast"])
    assert av.exit_code == 0
    lines = av.stdout.splitlines()
    assert lines[0] == str(world["mute"]) and lines[6] == f"  {note}" and lines[7] == str(world["tone"])
    assert len(lines) == 13 and av.stdout.count("audio track") == 1  # the video with sound gets no note
    visual = run_predict(world["mute"], "--checkpoint", world["ckpt"]["slowfast"])
    assert visual.exit_code == 0 and len(visual.stdout.splitlines()) == 6 and "audio" not in visual.stdout
    heard = run_predict(world["mute"], "--checkpoint", world["ckpt"]["audio"], "--json")
    [record] = json.loads(heard.stdout)
    assert record["has_audio"] is False
    assert record["note"].startswith("no audio track: this audio-only model hears only silence")
    # Silence on the audio pathway is what the store gives a clip without audio.
    np.testing.assert_array_equal([t["score"] for t in record["top"]],
                                  np.sort(store_scores(world, "audio", MUTE))[::-1][:5])


def test_an_unreadable_video_is_one_line_and_exit_1_while_the_others_are_scored(world, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    missing = tmp_path / "missing.mp4"
    done = subprocess.run([sys.executable, "-m", "avsf.predict", str(broken), str(world["tone"]), str(missing),
                           "--checkpoint", str(world["ckpt"]["slowfast"]), "--top", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{broken}: error: cannot read the video: corrupt_container")
    assert errors[1] == f"{missing}: error: cannot read the video: no_such_file: {missing}"
    expected = store_scores(world, "slowfast", TONE)
    path, *rows = done.stdout.splitlines()
    assert path == str(world["tone"]) and [r.split()[1] for r in rows] == [CLASSES[i] for i in np.argsort(-expected)[:3]]


def test_a_checkpoint_without_its_data_record_or_missing_is_a_one_line_error(world, tmp_path):
    official = write_checkpoint(world["root"], "slowfast", with_data=False)
    done = run_predict(world["tone"], "--checkpoint", official)
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: {official}: the checkpoint has no 'data' record")
    pickled = tmp_path / "SLOWFAST_8x8_R50.pkl"  # PySlowFast's Caffe2 checkpoints are plain pickles
    pickled.write_bytes(pickle.dumps({"blobs": {"conv1_w": [0.0]}}, protocol=4))
    caffe = run_predict(world["tone"], "--checkpoint", pickled)
    assert caffe.exit_code == 2 and caffe.stderr.count("\n") == 1
    assert caffe.stderr.startswith(f"error: {pickled}: not a checkpoint of the train stage") and "'data'" in caffe.stderr
    gone = run_predict(world["tone"], "--checkpoint", tmp_path / "nowhere.pyth")
    assert gone.exit_code == 2 and gone.stderr == f"error: checkpoint not found: {tmp_path / 'nowhere.pyth'}\n"


def test_predict_is_library_code():
    assert loaded_modules("avsf.predict", ("pipeline", "dvc", "submitit")) == []
