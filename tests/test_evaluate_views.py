"""The multi-view test: softmax averaged per video over the views that loaded, on hand-made
logits and on a tiny store and model against a loop over the dataset's items."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avsf.data.clip_dataset import ClipDataset, ClipSampling, collate_clips
from avsf.evaluate.views import ViewScores, predict_views
from avsf.models import HeadConfig, build_model, model_config
from avsf.train.engine import model_inputs

SAMPLING = ClipSampling(num_frames=2, stride=8, alpha=4, test_scale=32, test_crop=32, test_clips=2, test_crops=3,
                        spec_frames=32)
VIEWS = SAMPLING.test_clips * SAMPLING.test_crops


def test_views_average_softmax_and_leave_out_the_views_that_failed():
    scores = ViewScores(videos=3, classes=2)
    # Video 0: views that disagree, [0.25, 0.75] and [0.5, 0.5], and a failed one that would say [0.9, 0.1].
    # Video 1: no view loaded. Video 2: one view, [0.75, 0.25].
    scores.add([0, 0, 1], torch.tensor([[0.0, math.log(3)], [0.0, 0.0], [5.0, 0.0]], dtype=torch.float64),
               [True, True, False])
    scores.add(np.array([0, 2]), np.array([[math.log(9), 0.0], [math.log(3), 0.0]]), np.array([False, True]))
    result = scores.result()
    assert result.scores.dtype == np.float64
    np.testing.assert_allclose(result.scores, [[0.375, 0.625], [0.0, 0.0], [0.75, 0.25]], rtol=1e-12)
    assert result.views.tolist() == [2, 0, 1] and result.predicted.tolist() == [True, False, True]
    by_id = result.scores_by_id(["x", "y", "z"])  # the videos with a prediction only
    assert list(by_id) == ["x", "z"] and by_id["z"].tolist() == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match="2 ids for 3 videos"):
        result.scores_by_id(["x", "y"])


@pytest.fixture(scope="module")
def store(train_store) -> Path:
    return train_store


def val_set(store: Path) -> ClipDataset:
    return ClipDataset(store / "frames", store / "logmel", "val", "test", SAMPLING)


def tiny_model(arch: str):
    """A tiny untrained model whose classifier weights are drawn large (std 1), so that its
    views' softmax scores differ visibly (the initial head's std 0.01 gives ~0.5 everywhere)."""
    torch.manual_seed(0)
    cfg = model_config(arch, frames=2, stride=8, tiny=True, mel_bins=80, head=HeadConfig(num_classes=2, dropout=0.0))
    model = build_model(cfg)
    for p in model.head.parameters():
        p.data.normal_(0, 1)
    return model, cfg


def item_by_item(model, cfg, dataset: ClipDataset) -> tuple[np.ndarray, np.ndarray]:
    """The multi-view scores by hand: each loaded item alone through the model, softmax, mean."""
    sums, views = np.zeros((len(dataset.samples), 2)), np.zeros(len(dataset.samples), int)
    seen = []
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["index"] == i // VIEWS
            if item["loaded"]:
                logits = model(model_inputs(cfg, collate_clips([item]), torch.device("cpu"), channels_last=False))
                seen.append(torch.softmax(logits.double(), dim=1)[0].numpy())
                sums[item["index"]] += seen[-1]
                views[item["index"]] += 1
    assert np.ptp(np.array(seen)[:, 0]) > 1e-3  # the views disagree: the mean is a real average
    return sums / np.maximum(views, 1)[:, None], views


@pytest.mark.parametrize("arch", ["slowfast", "avslowfast"])
def test_predict_views_is_the_mean_softmax_of_each_videos_views(store, arch):
    model, cfg = tiny_model(arch)
    dataset = val_set(store)
    assert len(dataset.samples) == 4 and len(dataset) == 4 * VIEWS
    result = predict_views(model, cfg, dataset, batch_size=5)
    expected, views = item_by_item(model, cfg, dataset)
    assert result.views.tolist() == views.tolist() == [VIEWS] * 4 and result.failures == []
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0, atol=1e-9)


def test_a_view_that_fails_is_left_out_and_reported(store, monkeypatch):
    model, cfg = tiny_model("slowfast")
    dataset = val_set(store)
    names = [e.youtube_id for e in dataset.entries]
    partly, wholly = names[1], names[2]  # the second clip of one video fails, every view of another
    read = dataset.reader.frames

    def frames(entry, start, stop):
        if entry.youtube_id == wholly or (entry.youtube_id == partly and start > 0):
            raise OSError(f"unreadable shard for {entry.youtube_id}")
        return read(entry, start, stop)

    monkeypatch.setattr(dataset.reader, "frames", frames)
    result = predict_views(model, cfg, dataset, batch_size=4)
    expected, views = item_by_item(model, cfg, dataset)
    per_clip = SAMPLING.test_crops
    assert result.views.tolist() == views.tolist() == [VIEWS, VIEWS - per_clip, 0, VIEWS]
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    assert result.scores[2].tolist() == [0.0, 0.0] and result.scores[1].sum() == pytest.approx(1.0)
    ids = [f["id"] for f in result.failures]
    assert ids == [dataset.entries[1].clip_id] * per_clip + [dataset.entries[2].clip_id] * VIEWS
    assert all(f["reason"] == "load_failed" and "OSError: unreadable shard" in f["detail"] for f in result.failures)


def test_predict_views_wants_a_test_mode_dataset(store):
    model, cfg = tiny_model("slowfast")
    with pytest.raises(ValueError, match="test mode"):
        predict_views(model, cfg, ClipDataset(store / "frames", store / "logmel", "val", "train", SAMPLING))
