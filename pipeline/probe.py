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
    ──> <ssl.reports>/probe/<backbone>.json (and its copy <ssl.out_dir>/probe/<backbone>/probe.json)

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
from avsf.data.ucf_hmdb import SplitLabels, TransferSplits, read_transfer_splits
from avsf.evaluate.probe import Features, extract_features, train_linear_probe, video_top1
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.models import build_model
from avsf.train import checkpoint as ckpt
from avsf.train.engine import model_inputs
from avsf.train.sampler import item_seed
from pipeline.evaluate import EvaluationJob, load_network
from pipeline.launch import StageFailed, run_job
from pipeline.models import config_from_params
from pipeline.params import PROBE_REFERENCES, TRANSFER_STORE_SPLIT, Params
from pipeline.train import clip_sampling, store_identity

log = logging.getLogger("avsf.probe")

STAGE = "probe"


def backbone_params(params: Params, backbone: str) -> tuple[Params, Path | None]:
    """(the params whose model the backbone is, its checkpoint; None: random weights)."""
    ssl = params.ssl
    if backbone == "random":
        return params.variant(ssl.random_member), None
    if backbone == "supervised":
        member = params.variant(ssl.supervised_member)
        return member, Path(member.train.out_dir) / ckpt.FINAL
    pretrain = params.pretrain(backbone)
    return pretrain, Path(pretrain.train.out_dir) / ckpt.FINAL


def probe_report_path(params: Params, backbone: str) -> Path:
    return Path(params.ssl.reports) / "probe" / f"{backbone}.json"


def probe_dir(params: Params, backbone: str) -> Path:
    """Where a backbone's probe keeps its record (probe.json) and, in mode all, its runs."""
    return Path(params.ssl.out_dir) / "probe" / backbone


def run_probe(params: Params, backbone: str) -> None:
    """Probe backbone ``backbone`` (a setting of ssl.settings, or random, or supervised) on
    every dataset of ssl.probe.datasets and split of ssl.probe.splits: ssl.probe.mode linear
    trains only a new fc on the frozen backbone's features, all fine-tunes every layer.
    Writes top-1 per split and the mean over the splits to <ssl.reports>/probe/<backbone>.json."""
    ssl = params.ssl
    if ssl is None:
        raise StageFailed("probe: params has no ssl section")
    if backbone not in (*ssl.settings, *PROBE_REFERENCES):
        raise StageFailed(f"probe: no backbone {backbone!r}; backbones: {', '.join((*ssl.settings, *PROBE_REFERENCES))}")
    member, checkpoint = backbone_params(params, backbone)
    if checkpoint is not None and not checkpoint.is_file():
        stage = "train@" + ssl.supervised_member if backbone == "supervised" else f"pretrain@{backbone}"
        raise StageFailed(f"probe: no backbone at {checkpoint}; run stage {stage} first")
    started = time.monotonic()
    report: dict[str, Any] = {"backbone": backbone, "model": member.model.arch, "mode": ssl.probe.mode,
                              "checkpoint": str(checkpoint) if checkpoint else None, "datasets": {}}
    for name in ssl.probe.datasets:
        data = params.for_dataset(name)
        try:
            splits = read_transfer_splits(name, getattr(params, name).annotations, ssl.probe.splits)
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"probe: {name}: {exc}") from None
        if ssl.probe.mode == "linear":
            result = _linear(params, data, member, checkpoint, backbone, name, splits)
        else:
            result = _fine_tuned(params, data, member, checkpoint, backbone, name, splits)
        report["datasets"][name] = result
        log.info("probe: %s on %s (%s): top-1 %s, mean %.3f", backbone, name, ssl.probe.mode,
                 ", ".join(f"split {k} {v['top1']:.3f}" for k, v in result["splits"].items()), result["mean_top1"])
    report["seconds"] = round(time.monotonic() - started, 1)
    write_json(probe_dir(params, backbone) / "probe.json", report)
    write_json(probe_report_path(params, backbone), report)


def _linear(params: Params, data: Params, member: Params, checkpoint: Path | None, backbone: str, name: str,
            splits: TransferSplits) -> dict[str, Any]:
    p = params.ssl.probe
    frames_dir, logmel_dir = Path(data.decode.out_dir), Path(data.spectrogram.out_dir)
    if not (frames_dir / INDEX_NAME).is_file():
        raise StageFailed(f"probe: no {name} store at {frames_dir}; run stage decode_{name} first")
    fingerprint = digest("probe-linear", file_digest(checkpoint) if checkpoint else None, member.train.seed,
                         member.model.model_dump(), member.dataset.model_dump(), p.model_dump(),
                         store_identity(frames_dir, logmel_dir), splits.classes,
                         {k: [[v.video_id for v in side] for side in pair] for k, pair in splits.splits.items()})
    job = LinearProbeJob(params, data, member, checkpoint, splits)
    attach = Path(params.launch.log_dir) / STAGE / backbone / name / "running.json"
    return run_job(STAGE, job, params.launch, attach, fingerprint)


class LinearProbeJob(EvaluationJob):
    """Features of the frozen backbone once, then one fc per split."""

    stage = STAGE

    def __init__(self, params: Params, data: Params, member: Params, checkpoint: Path | None, splits: TransferSplits):
        super().__init__(params)
        self.data, self.member, self.checkpoint, self.splits = data, member, checkpoint, splits

    def run(self, device: torch.device) -> dict[str, Any]:
        p, probe = self.params, self.params.ssl.probe
        state = None  # random weights: temporal_sampling auto is strided
        if self.checkpoint is not None:
            model, cfg, state = load_network(self.checkpoint, device)
        else:
            cfg = config_from_params(self.member.model)
            torch.manual_seed(self.member.train.seed)
            model = build_model(cfg).to(device)
        for param in model.parameters():  # frozen: nothing of the backbone is ever optimised
            param.requires_grad_(False)
        sampling = replace(clip_sampling(self.member.dataset, self.member.model, weights=state),
                           test_clips=probe.test_clips, test_crops=probe.test_crops)
        logmel = self.data.spectrogram.out_dir if cfg.audio is not None else None
        labels = SplitLabels.of(self.splits.videos())
        common = dict(labels=labels, max_open_shards=p.dataset.max_open_shards)
        train_set = ClipDataset(self.data.decode.out_dir, logmel, TRANSFER_STORE_SPLIT, "train", sampling, **common)
        test_set = ClipDataset(self.data.decode.out_dir, logmel, TRANSFER_STORE_SPLIT, "test", sampling, **common)
        if not train_set.samples:
            raise RuntimeError(f"probe: the store {self.data.decode.out_dir} holds none of the split files' videos")
        seed = self.member.train.seed
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
            fc = train_linear_probe(train_rows.values, targets, len(self.splits.classes), probe.epochs,
                                    probe.batch_size, probe.base_lr, probe.weight_decay, seed=seed + k)
            stored_test = {index_of[v.video_id]: v.label for v in test_videos if v.video_id in index_of}
            hits, _ = video_top1(fc, test.of_videos(stored_test), stored_test)
            splits_out[str(k)] = {"top1": hits / max(len(test_videos), 1), "train_videos": len(train_videos),
                                  "test_videos": len(test_videos),
                                  "missing": len(train_videos) + len(test_videos) - len(set(label_of)),
                                  "train_clips": int(train_rows.values.shape[0])}
        return {"splits": splits_out, "mean_top1": float(np.mean([s["top1"] for s in splits_out.values()])),
                "classes": len(self.splits.classes), "feature_dim": int(train.values.shape[1]),
                "failed_clips": len(failed)}


def _fine_tuned(params: Params, data: Params, member: Params, checkpoint: Path | None, backbone: str, name: str,
                splits: TransferSplits) -> dict[str, Any]:
    """Every layer trained from the backbone, one engine run per split (pipeline.train)."""
    from pipeline.datasets import DatasetSpec
    from pipeline.train import _train_one

    ssl = params.ssl
    out: dict[str, Any] = {}
    for k, (train_videos, test_videos) in splits.splits.items():
        raw = data.model_dump()
        raw["model"] = member.model.model_dump()
        raw["dataset"] = member.dataset.model_dump()
        t = raw["train"]
        t.update(ssl.probe.train)
        run_dir = f"{probe_dir(params, backbone)}/{name}/split{k}"
        t.update(out_dir=run_dir, ledger=f"{run_dir}/failed_loads.csv", metrics=f"{run_dir}/metrics.json",
                 live_dir=f"{run_dir}/live", train_split=f"train{k}",
                 val_split=f"test{k}", init_checkpoint=str(checkpoint) if checkpoint else None)
        raw["launch"]["log_dir"] = f"{params.launch.log_dir}/probe/{backbone}/{name}/split{k}"
        run = Params.model_validate(raw)
        spec = DatasetSpec(name, getattr(params, name).annotations)
        summary = _train_one(run, spec, live_prefix="")
        stored = summary["final"].get("videos", 0)
        top1 = summary["final"].get("top1", 0.0) * stored / max(len(test_videos), 1)  # a missing video is a miss
        out[str(k)] = {"top1": top1, "train_videos": len(train_videos), "test_videos": len(test_videos),
                       "missing": len(test_videos) - stored, "epochs": summary["epochs"]}
    return {"splits": out, "mean_top1": float(np.mean([s["top1"] for s in out.values()])),
            "classes": len(splits.classes)}

