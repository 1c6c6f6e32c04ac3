"""Stages ``probe@<setting>`` and ``probe_reference@<random|supervised>``: how well a
pretrained backbone transfers to UCF101 and HMDB51, top-1 on each official split and the
mean over the splits (AVSlowFast Table A.1).

    backbone: a pretext setting's final.pyth (stage pretrain@<setting>), the supervised
              Kinetics final.pyth (ssl.supervised_member), or random weights (ssl.random_member)
    ssl.probe.mode linear:  one job per dataset
        store (every video once) ──frozen network──> features of train_views random train
        clips and of the test views of every video (avsf.evaluate.probe)
        split k: fc trained on its train list's features ──> top-1 over its test list
    ssl.probe.mode all:     per dataset and split, stage train's engine fine-tunes every
        layer from the backbone on the train list; top-1 is its validation on the test list
    ──> reports/ssl/models/<backbone>/metrics.json (and its copy data/ssl/probe/<backbone>/probe.json)

Top-1 is over every video of a split's test list: one that is not in the store (failed
to download or decode) counts as a miss, and the count is reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsf.data.clip_dataset import ClipDataset, SampleKey, collate_clips
from avsf.data.kinetics import ManifestError
from avsf.data.store import INDEX_NAME
from avsf.data.ucf_hmdb import SplitLabels, TransferSplits
from avsf.evaluate.probe import Features, extract_features, train_linear_probe, video_top1
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.io.machine import joined, machine_description
from avsf.models import build_model
from avsf.train import checkpoint as ckpt
from avsf.train.engine import model_inputs
from avsf.train.sampler import item_seed
from pipeline.cli import configure_logging
from pipeline.datasets import dataset
from pipeline.datasets.ucf_hmdb import STORE_SPLIT, TransferDataset
from pipeline.evaluate import job_device, load_network, trained_on
from pipeline.launch import StageFailed, job_env, run_job
from pipeline.layout import METRICS_NAME, SSL, Layout, RunPaths
from pipeline.models import config_from_params
from pipeline.params import Params, ProbeParams, TrainParams, epochs_for
from pipeline.runs import PROBE_REFERENCES, TrainRun, kinetics_run, pretrain_run, stage_launch
from pipeline.train import clip_sampling, store_identity

log = logging.getLogger("avsf.probe")

STAGE = "probe"


def backbone_run(params: Params, backbone: str) -> tuple[TrainRun, Path | None]:
    """(the run whose model the backbone is, its checkpoint; None: random weights)."""
    ssl = params.ssl
    if backbone == "random":
        return kinetics_run(params, ssl.random_member), None
    run = kinetics_run(params, ssl.supervised_member) if backbone == "supervised" else pretrain_run(params, backbone)
    return run, run.paths.out_dir / ckpt.FINAL


def probe_dir(params: Params, backbone: str) -> Path:
    """Where a backbone's probe keeps its record (probe.json) and, in mode all, its runs."""
    return Layout.of(params.layout).probe(backbone)


def run_probe(params: Params, backbone: str) -> None:
    """Probe backbone ``backbone`` (a setting of ssl.settings, or random, or supervised) on
    every dataset of ssl.probe.datasets and split of ssl.probe.splits: ssl.probe.mode linear
    trains only a new fc on the frozen backbone's features, all fine-tunes every layer.
    Writes top-1 per split and the mean over the splits to reports/ssl/models/<backbone>/metrics.json."""
    ssl = params.ssl
    if ssl is None:
        raise StageFailed("probe: params has no ssl section")
    if backbone not in (*ssl.settings, *PROBE_REFERENCES):
        raise StageFailed(f"probe: no backbone {backbone!r}; backbones: {', '.join((*ssl.settings, *PROBE_REFERENCES))}")
    member, checkpoint = backbone_run(params, backbone)
    if checkpoint is not None and not checkpoint.is_file():
        raise StageFailed(f"probe: no backbone at {checkpoint}; run stage {member.stage} first")
    started = time.monotonic()
    report: dict[str, Any] = {"backbone": backbone, "model": member.params.model.arch, "mode": ssl.probe.mode,
                              "checkpoint": str(checkpoint) if checkpoint else None, "datasets": {}}
    for name in ssl.probe.datasets:
        data = dataset(params, name)
        try:
            splits = data.splits(ssl.probe.splits)
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"probe: {name}: {exc}") from None
        if ssl.probe.mode == "linear":
            result = _linear(params, data, member, checkpoint, backbone, splits)
        else:
            result = _fine_tuned(params, data, member, checkpoint, backbone, splits)
        report["datasets"][name] = result
        log.info("probe: %s on %s (%s): top-1 %s, mean %.3f", backbone, name, ssl.probe.mode,
                 ", ".join(f"split {k} {v['top1']:.3f}" for k, v in result["splits"].items()), result["mean_top1"])
    report["seconds"] = round(time.monotonic() - started, 1)
    # (strings: `dvc metrics diff` leaves them out)
    machines = {"machine": joined(r.pop("machine", None) for r in report["datasets"].values()),
                "trained_on": trained_on([checkpoint] if checkpoint else [])}
    report.update({k: v for k, v in machines.items() if v})
    write_json(probe_dir(params, backbone) / "probe.json", report)
    write_json(Layout.of(params.layout).model(SSL, backbone) / METRICS_NAME, report)


def linear_epochs(probe: ProbeParams, rows: int) -> int:
    """The fc's passes over ``rows`` feature rows: ssl.probe.epochs, or as many as
    ssl.probe.iterations steps of batch_size rows make (A.8's 320k iterations at 64)."""
    return probe.epochs if probe.iterations is None else epochs_for(probe.iterations, probe.batch_size, rows)


def _store(params: Params, data: TransferDataset) -> tuple[Path, Path]:
    layout = Layout.of(params.layout)
    return layout.frames(data.name), layout.logmel(data.name)


def _linear(params: Params, data: TransferDataset, member: TrainRun, checkpoint: Path | None, backbone: str,
            splits: TransferSplits) -> dict[str, Any]:
    p = params.ssl.probe
    frames_dir, logmel_dir = _store(params, data)
    if not (frames_dir / INDEX_NAME).is_file():
        raise StageFailed(f"probe: no {data.name} store at {frames_dir}; run stage decode@{data.name} first")
    m = member.params
    fingerprint = digest("probe-linear", file_digest(checkpoint) if checkpoint else None, m.train.seed,
                         m.model.model_dump(), m.dataset.model_dump(), p.model_dump(), params.launch.cpu_isa,
                         store_identity(frames_dir, logmel_dir), splits.classes,
                         {k: [[v.video_id for v in side] for side in pair] for k, pair in splits.splits.items()})
    job = LinearProbeJob(params, data, member, checkpoint, splits)
    launch = stage_launch(params.launch, SSL, "probe", backbone, data.name)
    return run_job(STAGE, job, launch, Path(launch.log_dir) / STAGE / "running.json", fingerprint)


class LinearProbeJob:
    """The job's function: features of the frozen backbone once, then one fc per split."""

    def __init__(self, params: Params, data: TransferDataset, member: TrainRun, checkpoint: Path | None,
                 splits: TransferSplits):
        self.params, self.data, self.member, self.checkpoint, self.splits = params, data, member, checkpoint, splits

    def __call__(self) -> dict[str, Any]:
        configure_logging()
        if job_env()[1] != 0:
            return {}
        p, probe = self.params, self.params.ssl.probe
        device = job_device(self.member.params, p.evaluate, STAGE)
        member = self.member.params
        state = None  # random weights: temporal_sampling auto is strided
        if self.checkpoint is not None:
            model, cfg, state = load_network(self.checkpoint, device)
        else:
            cfg = config_from_params(member.model)
            torch.manual_seed(member.train.seed)
            model = build_model(cfg).to(device)
        for param in model.parameters():  # frozen: nothing of the backbone is ever optimised
            param.requires_grad_(False)
        sampling = replace(clip_sampling(member.dataset, member.model, weights=state), test_clips=probe.test_clips,
                           test_crops=probe.test_crops)
        frames, logmel_dir = _store(p, self.data)
        logmel = logmel_dir if cfg.audio is not None else None
        labels = SplitLabels.of(self.splits.videos())
        common = dict(labels=labels, max_open_shards=p.dataset.max_open_shards)
        train_set = ClipDataset(frames, logmel, STORE_SPLIT, "train", sampling, **common)
        test_set = ClipDataset(frames, logmel, STORE_SPLIT, "test", sampling, **common)
        if not train_set.samples:
            raise RuntimeError(f"probe: the store {frames} holds none of the split files' videos")
        seed = member.train.seed
        keys = [SampleKey(i, seed=item_seed(seed, view, i)) for view in range(probe.train_views)
                for i in range(len(train_set))]  # (view v draws as the sampler's epoch v would)

        failed: list[dict] = []  # every clip that failed to load (a train one is replaced, a test one blank)

        def counted(loader: DataLoader, what: str):
            for batch in tqdm(loader, desc=f"{what} features", unit="batch"):
                failed.extend(batch["load_failures"])
                yield batch

        def features(dataset: ClipDataset, sampler: Any, what: str) -> Features:
            loader = DataLoader(dataset, batch_size=p.evaluate.batch_size, sampler=sampler,
                                num_workers=p.evaluate.workers, collate_fn=collate_clips)
            return extract_features(model, counted(loader, what),
                                    lambda b: model_inputs(cfg, b, device, channels_last=False), device)

        train = features(train_set, keys, "train")
        test = features(test_set, range(len(test_set)), "test")
        index_of = {s.entry.youtube_id: i for i, s in enumerate(train_set.samples)}
        splits_out: dict[str, Any] = {}
        for k, (train_videos, test_videos) in self.splits.splits.items():
            train_rows = train.of_videos(index_of[v.video_id] for v in train_videos if v.video_id in index_of)
            label_of = {index_of[v.video_id]: v.label for v in (*train_videos, *test_videos) if v.video_id in index_of}
            targets = torch.tensor([label_of[int(i)] for i in train_rows.video])
            fc = train_linear_probe(train_rows.values, targets, len(self.splits.classes),
                                    linear_epochs(probe, train_rows.values.shape[0]), probe.batch_size,
                                    probe.base_lr, probe.weight_decay, seed=seed + k)
            stored_test = {index_of[v.video_id]: v.label for v in test_videos if v.video_id in index_of}
            hits, _ = video_top1(fc, test.of_videos(stored_test), stored_test)
            splits_out[str(k)] = {"top1": hits / max(len(test_videos), 1), "train_videos": len(train_videos),
                                  "test_videos": len(test_videos),
                                  "missing": len(train_videos) + len(test_videos) - len(set(label_of)),
                                  "train_clips": int(train_rows.values.shape[0])}
        return {"splits": splits_out, "mean_top1": float(np.mean([s["top1"] for s in splits_out.values()])),
                "classes": len(self.splits.classes), "feature_dim": int(train.values.shape[1]),
                "failed_clips": len(failed), "machine": machine_description(device)}


def _fine_tuned(params: Params, data: TransferDataset, member: TrainRun, checkpoint: Path | None, backbone: str,
                splits: TransferSplits) -> dict[str, Any]:
    """Every layer trained from the backbone, one engine run per split (pipeline.train)."""
    from pipeline.train import _train_one

    ssl = params.ssl
    out: dict[str, Any] = {}
    machines = []
    for k, (train_videos, test_videos) in splits.splits.items():
        # (the train section's recipe with ssl.probe.train's changes: not the pretext's)
        train = TrainParams.model_validate({**params.train.model_dump(), **ssl.probe.train,
                                            "init_checkpoint": str(checkpoint) if checkpoint else None})
        run_dir = probe_dir(params, backbone) / data.name / f"split{k}"
        run_params = member.params.model_copy(update={
            "train": train, "launch": stage_launch(params.launch, SSL, "probe", backbone, data.name, f"split{k}")})
        run = TrainRun(f"probe@{backbone}", f"split{k}", data, run_params, RunPaths(run_dir, run_dir / "live"),
                       f"train{k}", f"test{k}", replace_head=True)
        summary = _train_one(run)
        machines.append(summary.get("machine"))
        stored = summary["final"].get("videos", 0)
        top1 = summary["final"].get("top1", 0.0) * stored / max(len(test_videos), 1)  # a missing video is a miss
        out[str(k)] = {"top1": top1, "train_videos": len(train_videos), "test_videos": len(test_videos),
                       "missing": len(test_videos) - stored, "epochs": summary["epochs"]}
    return {"splits": out, "mean_top1": float(np.mean([s["top1"] for s in out.values()])),
            "classes": len(splits.classes), "machine": joined(machines)}
