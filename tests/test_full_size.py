"""A paper-size network (AVSlowFast 4x16 R50, not tiny: 40 M parameters) through the train and
evaluate stages' code, in-process, at a 64 px crop: one training step from known weights,
precise BN, one evaluation view. (bench/full_size.py runs both paper models at 224 / 256
through the stage scripts; this is its check within the suite's budget, about 15 s.)"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from avsf.data.clip_dataset import ClipDataset, collate_clips
from avsf.models import build_model
from avsf.train.engine import model_inputs
from pipeline.evaluate import load_network, run_evaluate
from pipeline.models import config_from_params
from pipeline.params import load_params
from pipeline.train import clip_sampling, run_train

from clip_factory import KINETICS, ClipSpec, build_store
from conftest import write_params

# Two training clips (one batch) and one validation clip, 2.5 s: a 4x16 clip spans 64 frames (2.1 s).
SPECS = [ClipSpec(name, seconds=2.5, size=(96, 72), noise=0.05, label=label, tone_hz=tone, split=split)
         for name, label, tone, split in [("low0", "low", 300.0, "train"), ("high0", "high", 1500.0, "train"),
                                          ("high1", "high", 1500.0, "val")]]
STORE = {"launch.cluster": "debug", "decode.short_side": 72, "decode.clips_per_shard": 3}
PAPER_SIZE = {
    **STORE,
    "finetune.datasets": [],  # (the fine-tuning datasets' tiny crops would refuse a 64 px test crop)
    "datasets.kinetics.manifests": ["full_size.csv"],
    "model.arch": "avslowfast", "model.depth": 50, "model.frames": 4, "model.stride": 16, "model.tiny": False,
    "model.width": None, "model.num_classes": 2,
    "dataset.train_scale": [64, 72], "dataset.train_crop": 64, "dataset.test_scale": 64, "dataset.test_crop": 64,
    "dataset.test_clips": 1, "dataset.test_crops": 1, "dataset.spec_frames": 128,
    "dataset.temporal_sampling": "strided",
    "train.device": "cpu", "train.epochs": 1, "train.batch_size": 2, "train.reference_batch": 2,
    "train.base_lr": 0.01, "train.warmup_epochs": 0.0, "train.workers": 0, "train.persistent_workers": False,
    "train.precise_bn_batches": 1, "train.val_every": 1, "train.keep_checkpoints": 1,
    "evaluate.batch_size": 1, "evaluate.workers": 0,
}


def write_manifest(root: Path) -> None:
    """The manifest download@kinetics would have copied (the evaluation's ground truth)."""
    path = root / KINETICS.annotations("kinetics") / "full_size.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{s.label},{s.name},0,{s.clip_id.rsplit('_', 1)[1].lstrip('0')},{s.split},0" for s in SPECS]
    path.write_text("\n".join(["label,youtube_id,time_start,time_end,split,is_cc", *rows]) + "\n")


def test_paper_size_model_trains_a_step_and_evaluates_a_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    build_store(tmp_path, SPECS, STORE)
    write_manifest(tmp_path)
    # The starting weights, written as a checkpoint (train.init_checkpoint), so the step's change is seen
    params = load_params(write_params(tmp_path / "params.yaml", PAPER_SIZE))
    cfg = config_from_params(params.model)
    torch.manual_seed(0)
    initial = build_model(cfg).state_dict()
    assert sum(v.numel() for k, v in initial.items() if not k.startswith("sync.") and v.is_floating_point()) > 40e6
    torch.save({"model_state": initial}, tmp_path / "init.pyth")
    params = load_params(write_params(tmp_path / "params.yaml", {**PAPER_SIZE, "train.init_checkpoint": "init.pyth"}))
    monkeypatch.chdir(tmp_path)

    run_train(params)
    out_dir = KINETICS.run("kinetics", "model").out_dir
    summary = json.loads((out_dir / "summary.json").read_text())
    assert (summary["model"], summary["steps"], summary["precise_bn_batches"]) == ("avslowfast_r50_4x16", 1, 1)
    assert math.isfinite(summary["last_epoch"]["loss"]) and summary["last_epoch"]["loss"] > 0
    assert math.isfinite(summary["final"]["loss"]) and summary["final"]["videos"] == 1
    trained = torch.load(out_dir / "final.pyth", map_location="cpu", weights_only=True)["model_state"]
    assert trained.keys() == initial.keys()
    changed = {k for k, v in initial.items() if v.is_floating_point() and not torch.equal(trained[k], v)}
    # SGD with weight decay moves every conv and linear weight; BN's scales and shifts (no weight
    # decay) move only where a gradient reached them: the stems of all three pathways through
    # the shortcuts, each block's last BN (zero-initialised: nothing reaches the BNs before it yet)
    assert {k for k, v in initial.items() if v.dim() >= 2} <= changed
    reached = {"head.projection.bias", *[f"s1.pathway{p}_stem.bn.{w}" for p in range(3) for w in ("weight", "bias")],
               "s5.pathway0_res2.branch2.c_bn.weight", "s5.pathway1_res2.branch2.c_bn.weight",
               "s5.pathway2_res2.branch2.c_bn.weight"}
    assert reached <= changed, reached - changed
    # precise BN re-estimated the statistics
    assert not torch.equal(trained["s1.pathway0_stem.bn.running_mean"], initial["s1.pathway0_stem.bn.running_mean"])

    run_evaluate(params)
    metrics = json.loads((KINETICS.model("kinetics", "model") / "metrics.json").read_text())
    assert (metrics["model"], metrics["views_per_video"], metrics["test_crop"]) == ("avslowfast_r50_4x16", 1, 64)
    assert metrics["official"]["videos"] == 1 and metrics["missing"] == 0 and metrics["failed_views"] == 0
    # 39.14 G at 256 (reports/model/flops.md): the audio pathway's 3.03 G whatever the crop, the
    # visual 36.11 G by the area, (64 / 256)^2
    assert metrics["gflops_per_view"] == pytest.approx(3.03 + 36.11 / 16, rel=0.01)
    with (KINETICS.model("kinetics", "model") / "results" / "predictions.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    # the stage's score is the softmax of the trained network's logits on that one view
    model, cfg, state = load_network(out_dir / "final.pyth", torch.device("cpu"))
    model.eval()
    sampling = clip_sampling(params.dataset, params.model, weights=state)
    clips = ClipDataset(KINETICS.frames("kinetics"), KINETICS.logmel("kinetics"), "val", "test", sampling)
    with torch.no_grad():
        logits = model(model_inputs(cfg, collate_clips([clips[0]]), torch.device("cpu"), channels_last=False))
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    scores = torch.softmax(logits.double(), dim=1)[0]
    classes = json.loads((KINETICS.frames("kinetics") / "classes.json").read_text())
    assert row["predicted"] == classes[int(scores.argmax())]
    assert float(row["score"]) == pytest.approx(float(scores.max()), abs=1e-4)
