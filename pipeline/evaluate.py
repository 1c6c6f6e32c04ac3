"""Stage ``evaluate``: the final checkpoint's multi-view test, scored as Kinetics scores it.

    final.pyth ──build + load──> network (eval)
    store (evaluate.split) ──ClipDataset test views──> predict_views ──> video scores
        (dataset.test_clips uniform clips x test_crops crops at test_scale, softmax averaged)
    download.manifests' rows of evaluate.split ──> every ground-truth video (the denominator)
    ──classification_report──> metrics.json   top-1, top-5, mean class accuracy (official: a video
                                       with no prediction is a miss; available: the rest),
                                       per class, per group, GFLOPs x views
                        predictions.csv  one row per manifest video
                        confusion.csv    actual,predicted per video (a DVC confusion plot)

Groups: the demo's cue groups (appearance, motion, sound, audiovisual) when the classes are
the demo's, the Kinetics-Sounds subset (AVSlowFast Appendix B) when any of its classes is
present. A rerun with the same checkpoint, store and settings reuses the job's result.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from avsf.data.clip_dataset import ClipDataset
from avsf.data.demo.world import CLASS_BY_NAME, demo_cue_groups
from avsf.data.kinetics import ManifestError, read_manifest
from avsf.data.store import CLASSES_NAME
from avsf.evaluate.classification import classification_report, kinetics_sounds_groups, ranked_classes
from avsf.evaluate.views import predict_views
from avsf.io.atomic import atomic_output, write_json
from avsf.io.digest import digest, file_digest
from avsf.models import build_model
from avsf.models.flops import count_cost
from avsf.models.serialize import config_from_dict
from avsf.train import checkpoint as ckpt
from pipeline.cli import configure_logging
from pipeline.launch import StageFailed, job_env, run_job, set_job_threads
from pipeline.params import Params
from pipeline.train import clip_sampling, resolve_device

log = logging.getLogger("avsf.evaluate")

STAGE = "evaluate"
METRICS_NAME, PREDICTIONS_NAME, CONFUSION_NAME = "metrics.json", "predictions.csv", "confusion.csv"
NO_PREDICTION = "(no prediction)"


def class_groups(classes: list[str]) -> dict[str, str]:
    """Class name -> group: the demo's cues for the demo's classes, else Kinetics-Sounds."""
    if classes and all(c in CLASS_BY_NAME for c in classes):
        return demo_cue_groups()
    return kinetics_sounds_groups(classes)


def ground_truth(params: Params, classes: list[str]) -> dict[str, int]:
    """Every labelled manifest video of evaluate.split (clip id -> class index): the official
    denominator, whatever failed to download or decode."""
    split, index = params.evaluate.split, {c: i for i, c in enumerate(classes)}
    labels: dict[str, int] = {}
    for path in params.download.manifests:
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            raise StageFailed(f"evaluate: {exc}") from None
        for seg in manifest.segments:
            if seg.split == split and seg.label is not None:
                if seg.label not in index:
                    raise StageFailed(f"evaluate: {path} names class {seg.label!r}, which the store's "
                                      f"{CLASSES_NAME} does not have")
                labels.setdefault(seg.clip_id, index[seg.label])
    return labels


def run_evaluate(params: Params) -> None:
    """Test the trained model (train.out_dir/final.pyth) with the papers' multi-view protocol
    on evaluate.split: dataset.test_clips x test_crops views per video at dataset.test_scale,
    softmax scores averaged per video. Scores every labelled row of download.manifests in
    that split: a video that failed to download or decode counts as a miss (the official
    figure; the figure over the videos that have a prediction is reported beside it).

    Writes to evaluate.out_dir: metrics.json (top-1, top-5, per-class and mean class
    accuracy, per-group accuracy with standard errors, GFLOPs x views), predictions.csv (one
    row per manifest video) and confusion.csv (a DVC confusion plot).
    """
    checkpoint = Path(params.train.out_dir) / ckpt.FINAL
    if not checkpoint.is_file():
        raise StageFailed(f"evaluate: no trained model at {checkpoint}; run the train stage first")
    frames_dir = Path(params.decode.out_dir)
    try:
        classes = json.loads((frames_dir / CLASSES_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise StageFailed(f"evaluate: cannot read the frame store {frames_dir}: {exc}") from None
    labels = ground_truth(params, classes)
    if not labels:
        raise StageFailed(f"evaluate: download.manifests have no labelled row in split {params.evaluate.split!r}")
    fingerprint = digest(file_digest(checkpoint), params.dataset.model_dump(), params.evaluate.model_dump(),
                         labels, resolve_device(params, STAGE))
    started = time.monotonic()
    out = run_job(STAGE, EvaluateJob(params, labels, classes), params.launch,
                  Path(params.launch.log_dir) / STAGE / "running.json", fingerprint)
    seconds = time.monotonic() - started
    write_outputs(params, out, classes, labels)
    o, a = out["report"]["official"], out["report"]["available"]
    log.info("evaluate: %s on %d videos (%d missing) x %d views: top-1 %s, top-5 %s (official; %s, %s "
             "over the %d available), %d views failed to load; %.1f s, %.1f views/s", out["model"],
             o["videos"], out["report"]["missing"], out["views_per_video"], *map(_figure, (o["top1"], o["top5"])),
             *map(_figure, (a["top1"], a["top5"])), a["videos"], out["failed_views"], seconds,
             out["views"] / max(seconds, 1e-9))


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class EvaluationJob:
    """An evaluation job's function: one process tests (more tasks per job would only repeat
    it), on the device params give it; subclasses do the work in :meth:`run`."""

    stage = STAGE  # whose launch resources (and so device) the job runs with

    def __init__(self, params: Params):
        self.params = params

    def __call__(self) -> dict[str, Any]:
        configure_logging()
        if job_env()[1] != 0:
            return {}
        return self.run(job_device(self.params, self.stage))

    def run(self, device: torch.device) -> dict[str, Any]:
        raise NotImplementedError


class EvaluateJob(EvaluationJob):
    """Kinetics: load the checkpoint, run every test view, score the videos."""

    def __init__(self, params: Params, labels: dict[str, int], classes: list[str]):
        super().__init__(params)
        self.labels, self.classes = labels, classes

    def run(self, device: torch.device) -> dict[str, Any]:
        p, e = self.params, self.params.evaluate
        model, cfg, state = load_network(Path(p.train.out_dir) / ckpt.FINAL, device)
        sampling = clip_sampling(p.dataset, p.model, weights=state)  # auto: the picks the model trained on
        logmel = p.spectrogram.out_dir if cfg.audio is not None else None
        dataset = ClipDataset(p.decode.out_dir, logmel, e.split, "test", sampling,
                              max_open_shards=p.dataset.max_open_shards)
        result = predict_views(model, cfg, dataset, batch_size=e.batch_size, device=device, workers=e.workers,
                               progress=True)
        scores = {clip: s for clip, s in result.scores_by_id([e.clip_id for e in dataset.entries]).items()
                  if clip in self.labels}  # (a stored clip no manifest row of the split names is not scored)
        report = classification_report(self.labels, scores, self.classes, class_groups(self.classes))
        per_view = count_cost(cfg, sampling.test_crop)
        views = sampling.test_clips * sampling.test_crops
        return {
            "model": cfg.name,
            "checkpoint_epoch": int(state.get("epoch", -1)) + 1,
            "report": report.to_dict(),
            "scores": {k: [float(x) for x in v] for k, v in scores.items()},
            "views_per_video": views,
            "views": int(result.views.sum()),
            "failed_views": len(result.failures),
            "failures": result.failures,
            "gflops_per_view": round(per_view.gmacs, 4),
            "params_m": round(per_view.mparams, 4),
            "test_crop": sampling.test_crop,
            "test_scale": sampling.test_scale,
        }


def job_device(params: Params, stage: str = STAGE) -> torch.device:
    """The evaluation job's device (from params: resolve_device), its threads set beside
    evaluate.workers loader processes."""
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or (os.cpu_count() or 1)
    set_job_threads(cpus, reserved=params.evaluate.workers)
    device_type, _ = resolve_device(params, stage)
    if device_type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{stage}: the run is on CUDA (train.device, launch gpus_per_node) but this job sees no GPU")
    return torch.device("cuda" if device_type == "cuda" else "cpu")


def load_network(path: Path, device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(network, its config, the checkpoint) of one of our training checkpoints, on ``device``."""
    state = ckpt.load_training_checkpoint(path)
    cfg = config_from_dict(state["model_config"])
    model = build_model(cfg)
    model.load_state_dict(state["model_state"])
    return model.to(device), cfg, state


def trained_checkpoint(path: Path, dataset: str) -> Path:
    """``path`` (a fine-tuned final.pyth), or the stage's error naming the stage to run first."""
    if not path.is_file():
        raise StageFailed(f"evaluate: no fine-tuned model at {path}; run train_{dataset} first")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """A CSV of ``rows`` (dicts) with ``columns``, written atomically."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(params: Params, out: dict[str, Any], classes: list[str], labels: dict[str, int]) -> None:
    """metrics.json, predictions.csv and confusion.csv in evaluate.out_dir."""
    out_dir = Path(params.evaluate.out_dir)
    report = out["report"]
    metrics = {
        "model": out["model"],
        "split": params.evaluate.split,
        "epochs": out["checkpoint_epoch"],
        "views": f"{out['views_per_video'] // params.dataset.test_crops} clips x {params.dataset.test_crops} crops",
        "views_per_video": out["views_per_video"],
        "test_crop": out["test_crop"],
        "gflops_per_view": out["gflops_per_view"],
        "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4),
        "params_m": out["params_m"],
        "top1": report["official"]["top1"],  # the official figure: a missing video is a miss
        "top5": report["official"]["top5"],
        "mean_class_accuracy": report["official"]["mean_class_accuracy"],
        "official": report["official"],
        "available": report["available"],
        "missing": report["missing"],
        "missing_ids": report["missing_ids"],
        "failed_views": out["failed_views"],
    }
    write_json(out_dir / METRICS_NAME, metrics)
    rows = []
    for clip, label in sorted(labels.items()):
        scores = out["scores"].get(clip)
        if scores is None:
            rows.append({"clip_id": clip, "label": classes[label], "predicted": NO_PREDICTION, "score": "",
                         "top5": ""})
            continue
        order = ranked_classes(scores)
        rows.append({"clip_id": clip, "label": classes[label], "predicted": classes[order[0]],
                     "score": f"{scores[order[0]]:.4f}",
                     "top5": ";".join(f"{classes[c]}:{scores[c]:.4f}" for c in order[:5])})
    write_csv(out_dir / PREDICTIONS_NAME, rows, ("clip_id", "label", "predicted", "score", "top5"))
    write_csv(out_dir / CONFUSION_NAME, [{"actual": r["label"], "predicted": r["predicted"]} for r in rows],
               ("actual", "predicted"))


