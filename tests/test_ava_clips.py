"""AVA keyframes through the clip dataset: centred clips, boxes with the frames' crop and
flip, training and test boxes, detection batches, the Detection task, a few engine steps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avsf.data.ava import (
    AvaBox,
    AvaDetection,
    read_ava_detections,
    read_ava_ground_truth,
    write_ava_detections,
    write_ava_ground_truth,
)
from avsf.data.ava_clips import AvaKeyframes
from avsf.data.clip_dataset import ClipDataset, ClipSampling, SampleKey, View, collate_clips, place_boxes
from avsf.models import HeadConfig, model_config
from avsf.train import checkpoint as ckpt
from avsf.train.engine import Trainer, TrainSettings
from avsf.train.recipe import LRSchedule
from avsf.train.tasks import Detection
from clip_factory import ClipSpec, build_store, frame_index

CLASSES = [1, 2, 3, 5]  # AVA action ids -> indices 0..3
BOX_A = (0.125, 0.125, 0.5, 0.875)
BOX_B = (0.5, 0.25, 0.875, 0.75)
NEAR_A = (0.125, 0.125, 0.5, 0.825)  # IoU 0.933 with A (3 decimals, as the files write them)
NEAR_B = (0.5, 0.25, 0.875, 0.625)  # IoU 0.75 with B
SPECS = [ClipSpec("movA", seconds=4.0, size=(64, 48)), ClipSpec("movB", seconds=2.0, size=(48, 64))]
# T 4, tau 16: a clip spans 64 frames; alpha 8 as the model's for tau 16
SAMPLING = ClipSampling(num_frames=4, stride=16, alpha=8, train_scale=(48, 48), train_crop=48, test_scale=24,
                        test_crop=24, test_clips=1, test_crops=1, test_full_frame=True, spec_frames=32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("ava"), SPECS, {"decode.short_side": 48})


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    """Ground truth and detections written in AVA's formats and read back."""
    root = tmp_path_factory.mktemp("ava-csv")
    truth = [AvaBox("movA", 902, BOX_A, 1, "0"), AvaBox("movA", 902, BOX_A, 3, "0"),
             AvaBox("movA", 902, BOX_B, 2, "1"), AvaBox("movA", 902, BOX_B, 80, "1"),  # 80: not trained on
             *(AvaBox("movA", t, BOX_B, 5, "1") for t in (900, 901, 903, 904)),
             AvaBox("movB", 901, BOX_A, 2, "0"), AvaBox("nostore", 902, BOX_A, 1, "0")]
    detections = [AvaDetection("movA", 902, NEAR_A, -1, 0.85), AvaDetection("movA", 902, NEAR_A, -1, 0.95),
                  AvaDetection("movA", 902, NEAR_B, -1, 0.9), AvaDetection("movA", 902, BOX_B, -1, 0.5),
                  AvaDetection("movA", 903, BOX_A, -1, 0.8), AvaDetection("movB", 901, NEAR_A, -1, 0.99)]
    write_ava_ground_truth(root / "gt.csv", truth, [("movA", 905)])
    write_ava_detections(root / "det.csv", detections)
    return read_ava_ground_truth(root / "gt.csv")[0], read_ava_detections(root / "det.csv")


def dataset(store, labels, mode="train", sampling=SAMPLING, logmel=None, **kw) -> ClipDataset:
    return ClipDataset(store[0], logmel, "train", mode, sampling, labels=labels, **kw)


def keyframe_item(ds: ClipDataset, keyframe, seed: int = 0) -> dict:
    position = next(i for i, s in enumerate(ds.samples) if ds.labels.keyframe(s) == keyframe)
    return ds[SampleKey(position, seed)]


# --------------------------------------------------------------------------- keyframes and clips


def test_a_keyframe_is_the_centre_of_its_clip_clamped_at_the_movies_ends(store, annotations):
    labels = AvaKeyframes(CLASSES, *annotations, mode="train")
    ds = dataset(store, labels, "test")
    # Seconds 900..903 of movA are store frames 0, 30, 60, 90 (30 fps from 900 s); 904 is frame
    # 120, past the 4 s stored; "nostore" has no video.
    assert labels.missing == [("movA", 904), ("nostore", 902)]
    assert [labels.keyframe(s) for s in ds.samples] == [("movA", t) for t in (900, 901, 902, 903)] + [("movB", 901)]
    starts = {}
    for i, sample in enumerate(ds.samples):
        item = ds[i]
        slow = [frame_index(f.permute(1, 2, 0).numpy()) for f in item["slow"].unbind(1)]
        assert slow == [round(item["start_s"] * 30) + 16 * j for j in range(4)]
        starts[labels.keyframe(sample)] = (sample.centre_frame, slow[0])
    # centre - 32, inside [0, frames - 64]: movA has 120 frames, movB 60 (shorter than a clip)
    assert starts == {("movA", 900): (0, 0), ("movA", 901): (30, 0), ("movA", 902): (60, 28),
                      ("movA", 903): (90, 56), ("movB", 901): (30, 0)}
    assert keyframe_item(dataset(store, labels), ("movA", 902))["start_s"] == pytest.approx(28 / 30)  # train too


def test_movie_start_second_per_video(store, annotations):
    labels = AvaKeyframes(CLASSES, *annotations, movie_start_s={"movA": 899.5, "movB": 901.0})
    ds = dataset(store, labels, "test")
    centres = {labels.keyframe(s): s.centre_frame for s in ds.samples}
    assert centres == {("movA", 900): 15, ("movA", 901): 45, ("movA", 902): 75, ("movA", 903): 105,
                       ("movB", 901): 0}
    assert ("movA", 904) in labels.missing


# --------------------------------------------------------------------------- training and test boxes


def test_training_boxes_are_the_truth_and_detections_that_overlap_it(annotations):
    labels = AvaKeyframes(CLASSES, *annotations, mode="train")
    boxes = labels.boxes[labels.keyframes.index(("movA", 902))]
    # A (actions 1, 3), B (2; 80 is not trained on), then the detection near A (IoU > 0.9, its
    # best score of two rows) with A's labels. Not: near B (IoU 0.75), B itself (score 0.5).
    np.testing.assert_allclose(boxes.boxes, [BOX_A, BOX_B, NEAR_A])
    np.testing.assert_array_equal(boxes.labels, [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0]])
    np.testing.assert_allclose(boxes.scores, [1.0, 1.0, 0.95])
    # The detection on 903 is A's box, but 903's truth is B: no overlap, not added.
    np.testing.assert_allclose(labels.boxes[labels.keyframes.index(("movA", 903))].boxes, [BOX_B])
    assert ("movA", 905) not in labels.keyframes  # a keyframe without boxes is no training sample


def test_test_boxes_are_the_detections_above_the_threshold(annotations):
    labels = AvaKeyframes(CLASSES, *annotations, mode="test")
    assert labels.keyframes == [("movA", 902), ("movA", 903), ("movB", 901)]
    boxes = labels.boxes[0]
    np.testing.assert_allclose(boxes.boxes, [NEAR_A, NEAR_B])  # B's own box scores 0.5 < 0.8
    np.testing.assert_allclose(boxes.scores, [0.95, 0.9])
    # labels for the validation loss: the truth box with IoU >= 0.5 (near B: 0.75)
    np.testing.assert_array_equal(boxes.labels, [[1, 0, 1, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(labels.boxes[1].labels, [[0, 0, 0, 0]])  # 903: A's box on B's truth
    stricter = AvaKeyframes(CLASSES, *annotations, mode="test", detection_score=0.92)
    assert stricter.keyframes == [("movA", 902), ("movB", 901)]
    np.testing.assert_allclose(stricter.boxes[0].boxes, [NEAR_A])
    assert len(stricter.ground_truth) == len(annotations[0])  # the truth, kept for the evaluation


# --------------------------------------------------------------------------- boxes with the crop


def test_boxes_take_the_frames_crop_scale_and_flip():
    # Stored 48 x 64; the square at left 16, side 48, resized to 24 (x 0.5), mirrored.
    view = View((48, 64), (0, 16, 48, 48), (24, 24), flip=True)
    target = {"boxes": torch.tensor([[0.25, 0.25, 0.5, 0.5],  # x 16..32, y 12..24 stored
                                     [0.0, 0.0, 0.5, 0.5],  # crosses the crop's left edge
                                     [0.0, 0.5, 0.2, 0.9]]),  # left of the crop: vanishes
              "box_labels": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
              "box_scores": torch.tensor([0.9, 0.8, 0.7]), "video_id": "v"}
    placed = place_boxes(target, view)
    # x: (16 - 16) * 0.5 = 0 .. 8, mirrored in 24: 16 .. 24; the second clipped at x = 0 first
    assert placed["boxes"].tolist() == [[16.0, 6.0, 24.0, 12.0], [16.0, 0.0, 24.0, 12.0]]
    assert placed["box_labels"].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert placed["box_scores"].tolist() == pytest.approx([0.9, 0.8])
    assert placed["box_normalised"].tolist() == [[0.25, 0.25, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]]
    assert placed["video_id"] == "v"
    unflipped, keep = View((48, 64), (0, 16, 48, 48), (24, 24)).place(target["boxes"])
    assert unflipped[0].tolist() == [0.0, 6.0, 8.0, 12.0] and keep.tolist() == [True, True, False]


def test_training_items_place_their_boxes_with_the_crop_they_were_cut_by(store, annotations):
    labels = AvaKeyframes(CLASSES, *annotations, mode="train")
    device = dataset(store, labels, decode_on="device")
    worker = dataset(store, labels)
    flips = set()
    for seed in range(8):
        item = keyframe_item(device, ("movA", 902), seed)
        top, left, side = item["box"].tolist()  # the crop the frames get
        assert side == 48 and top == 0 and 0 <= left <= 16
        x1, y1, x2, y2 = torch.tensor([BOX_A, BOX_B, NEAR_A]).unbind(1)
        x1, x2 = x1 * 64 - left, x2 * 64 - left
        if item["flip"]:
            x1, x2 = 48 - x2, 48 - x1
        expected = torch.stack([x1.clamp(0, 48), y1 * 48, x2.clamp(0, 48), y2 * 48], dim=1)
        torch.testing.assert_close(item["boxes"], expected)
        flips.add(item["flip"])
        same = keyframe_item(worker, ("movA", 902), seed)  # the worker path draws the same crop
        assert same["fast"].shape == (3, 32, 48, 48) and torch.equal(same["boxes"], item["boxes"])
    assert flips == {True, False}


def test_full_frame_test_items_and_their_batch(store, annotations):
    with pytest.raises(ValueError, match="test_crops must be 1"):
        ClipSampling(test_full_frame=True)
    labels = AvaKeyframes(CLASSES, *annotations, mode="test")
    ds = dataset(store, labels, "test")
    a, b = keyframe_item(ds, ("movA", 902)), keyframe_item(ds, ("movB", 901))
    assert a["fast"].shape == (3, 32, 24, 32) and b["fast"].shape == (3, 32, 32, 24)  # short side 24
    torch.testing.assert_close(a["boxes"], torch.tensor([NEAR_A, NEAR_B]) * torch.tensor([32, 24, 32, 24]))
    assert (a["video_id"], a["timestamp"]) == ("movA", 902)
    fast_a = a["fast"]
    batch = next(iter(DataLoader([a, b], batch_size=2, collate_fn=collate_clips)))  # padded to 32 x 32
    assert batch["fast"].shape == (2, 3, 32, 32, 32) and batch["slow"].shape == (2, 3, 4, 32, 32)
    assert torch.equal(batch["fast"][0, :, :, :24, :], fast_a) and not batch["fast"][0, :, :, 24:].any()
    assert batch["boxes"].shape == (3, 5) and batch["boxes"][:, 0].tolist() == [0.0, 0.0, 1.0]
    torch.testing.assert_close(batch["boxes"][2, 1:], torch.tensor(NEAR_A) * torch.tensor([24, 32, 24, 32]))
    assert batch["box_labels"].tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0]]  # movB 901: A, action 2
    assert batch["box_scores"].tolist() == pytest.approx([0.95, 0.9, 0.99])
    assert batch["box_normalised"].shape == (3, 4)
    assert batch["video_id"] == ["movA", "movB"] and batch["timestamp"].tolist() == [902, 901]


def test_a_test_keyframe_that_fails_to_load_is_a_blank_without_boxes(store, annotations, monkeypatch):
    ds = dataset(store, AvaKeyframes(CLASSES, *annotations, mode="test"), "test")
    good = ds[0]
    monkeypatch.setattr(ds.reader, "frames", lambda *a: (_ for _ in ()).throw(OSError("broken shard")))
    blank = ds[1]
    assert not blank["loaded"] and blank["load_failures"][0]["detail"] == "OSError: broken shard"
    assert blank["fast"].shape == (3, 32, 24, 24) and blank["boxes"].shape == (0, 4)
    batch = collate_clips([good, blank])
    assert batch["boxes"][:, 0].tolist() == [0.0, 0.0] and batch["box_normalised"].shape == (2, 4)
    assert batch["loaded"].tolist() == [True, False] and batch["timestamp"].tolist() == [902, -1]


def test_detection_batches_through_dataloader_workers(store, annotations):
    labels = AvaKeyframes(CLASSES, *annotations, mode="train")
    ds = dataset(store, labels)
    keys = [SampleKey(i, i) for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=3, sampler=keys, num_workers=2, collate_fn=collate_clips)
    counts = [len(labels.boxes[s.target["keyframe"]].boxes) for s in ds.samples]
    batches = list(loader)
    index = torch.cat([b["boxes"][:, 0] + 3 * n for n, b in enumerate(batches)])
    assert index.tolist() == [float(i) for i, c in enumerate(counts) for _ in range(c)]
    assert all(b["box_labels"].shape == (len(b["boxes"]), 4) for b in batches)


# --------------------------------------------------------------------------- the task


def test_detection_loss_is_the_mean_binary_cross_entropy_over_boxes_and_classes():
    task = Detection()
    logits = torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0], [2.0, -1.0]], requires_grad=True)
    batch = {"boxes": torch.zeros(3, 5), "box_labels": torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])}
    targets = task.targets(batch, torch.device("cpu"))
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4: BCE ln 2, ln 4/3; ln 4, ln 2; ln(1 + e^2), ln(1 + e^-1)
    per_box = [(math.log(2) + math.log(4 / 3)) / 2, (math.log(4) + math.log(2)) / 2,
               (math.log(1 + math.e**2) + math.log(1 + math.e**-1)) / 2]
    assert task.loss(logits, targets).item() == pytest.approx(sum(per_box) / 3)
    assert task.loss(logits, targets, "sum").item() == pytest.approx(sum(per_box))
    # top-1: box 0's argmax (1) is positive, box 1's (0) is not; box 2 has no positive: a miss
    counts = task.counts(logits, targets)
    assert counts == [1, 3] and task.summarise(counts) == {"top1_precision": pytest.approx(1 / 3)}
    empty = torch.zeros(0, 2, requires_grad=True)
    loss = task.loss(empty * 2, task.targets({"box_labels": torch.zeros(0, 2)}, torch.device("cpu")))
    loss.backward()
    assert loss.item() == 0.0 and empty.grad is not None
    assert task.counts(empty, torch.zeros(0, 2)) == [0, 0]


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("arch", ["slowfast", "avslowfast"])
def test_a_detection_model_trains_validates_and_checkpoints_through_the_engine(store, annotations, tmp_path, arch):
    """AVSlowFast with its sync heads and DropPathway: boxes reach the head on every path."""
    audio = arch == "avslowfast"
    sampling = replace(SAMPLING, spec_frames=128)  # 4 x alpha_a 32 log-mel rows
    kw = dict(sampling=sampling, logmel=store[1] if audio else None)
    train = dataset(store, AvaKeyframes(CLASSES, *annotations, mode="train"), sync_negatives=audio, **kw)
    val = dataset(store, AvaKeyframes(CLASSES, *annotations, mode="test"), "test", **kw)
    cfg = model_config(arch, frames=4, stride=16, tiny=True, drop_pathway=0.5,
                       head=HeadConfig(kind="ava", num_classes=len(CLASSES), dropout=0.0, activation="sigmoid"))
    schedule = LRSchedule(base_lr=0.05, reference_batch=2, global_batch=2, epochs=2, warmup_epochs=0.5,
                          warmup_start_lr=0.01)
    settings = TrainSettings(epochs=2, batch_size=2, schedule=schedule, workers=0, precise_bn_batches=1,
                             progress=False)
    trainer = Trainer(cfg, settings, train, val, tmp_path, task=Detection())
    result = trainer.run()
    assert result.global_step == 2 * 2  # 5 keyframes in batches of 2, the incomplete last one dropped
    assert all(math.isfinite(row["loss"]) and 0 <= row["top1_precision"] <= 1 for row in result.history)
    assert result.precise_bn_batches == 1
    assert result.final["videos"] == 4  # the val boxes: detections on 902 (2), 903 (1) and movB 901 (1)
    assert math.isfinite(result.final["loss"])
    assert (tmp_path / ckpt.FINAL).is_file() and (tmp_path / ckpt.epoch_checkpoint_name(2)).is_file()
    # A batch whose crops left no box: loss 0, still a graph to step through
    items = [train[SampleKey(i, 0)] for i in range(2)]
    for item in items:
        item.update({k: v[:0] for k, v in item.items() if k == "boxes" or k.startswith("box_")})
    loss, _, logits, _, _ = trainer._forward(collate_clips(items), drop=False)
    loss.backward()
    assert logits.shape == (0, len(CLASSES)) and loss.item() == 0.0
    assert trainer.model.head.projection.weight.grad is not None


def test_a_detection_run_stopped_mid_epoch_resumes_to_identical_weights(store, annotations, tmp_path):
    """The engine's exact resume holds with boxes: AVSlowFast (sync, DropPathway) stopped after
    its first steps and resumed in a new Trainer equals the run straight through."""
    sampling = replace(SAMPLING, spec_frames=128)

    def trainer(out):
        train = dataset(store, AvaKeyframes(CLASSES, *annotations, mode="train"), sync_negatives=True,
                        sampling=sampling, logmel=store[1])
        cfg = model_config("avslowfast", frames=4, stride=16, tiny=True, drop_pathway=0.5,
                           head=HeadConfig(kind="ava", num_classes=len(CLASSES), dropout=0.5, activation="sigmoid"))
        schedule = LRSchedule(base_lr=0.05, reference_batch=2, global_batch=2, epochs=2)
        settings = TrainSettings(epochs=2, batch_size=2, schedule=schedule, workers=0, precise_bn_batches=1,
                                 progress=False)
        return Trainer(cfg, settings, train, None, out, task=Detection())

    trainer(tmp_path / "straight").run()
    stopped = trainer(tmp_path / "stopped")
    stopped.should_stop = lambda: stopped.global_step == 0  # asked during step 1: stops after it, mid-epoch (of 2)
    assert stopped.run().preempted
    again = trainer(tmp_path / "stopped")  # a new process would build it afresh
    assert again.resume(tmp_path / "stopped" / ckpt.LAST)
    resumed = again.run()
    assert resumed.resumed_from["epoch"] == 0 and resumed.resumed_from["step"] > 0  # mid-epoch
    a = torch.load(tmp_path / "straight" / ckpt.FINAL, weights_only=False)["model_state"]
    b = torch.load(tmp_path / "stopped" / ckpt.FINAL, weights_only=False)["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
