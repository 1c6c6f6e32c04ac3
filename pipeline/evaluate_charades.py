"""Stage ``evaluate_charades@<member>``: the fine-tuned model scored as Charades' official
script scores it.

    final.pyth, store, Charades_v1_<split>.csv ──CharadesLabels: dataset.test_clips uniform
        clips x test_crops per video──> per-class sigmoid scores, max-pooled over the views
    ──charades_map──> metrics.json    mAP as the official script computes it (every
                                      ground-truth video, none predicted = minus infinity,
                                      videos with an empty `actions` field drop out) and the
                                      sklearn-style figure beside it, each labelled; GFLOPs x views
                      predictions.txt the official `id s1 ... sK` file, one line per predicted video
                      class_ap.csv    AP per class (a DVC bar plot)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsf.data.charades import read_charades
from avsf.data.clip_dataset import ClipDataset
from avsf.evaluate.charades import charades_map, write_charades_predictions
from avsf.evaluate.views import predict_views
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.models.flops import count_cost
from avsf.train import checkpoint as ckpt
from pipeline.datasets import dataset_spec
from pipeline.evaluate import METRICS_NAME, EvaluationJob, load_network, trained_checkpoint, write_csv
from pipeline.launch import StageFailed, run_job
from pipeline.params import Params
from pipeline.train import clip_sampling, resolve_device

log = logging.getLogger("avsf.evaluate")

STAGE = "evaluate"
PREDICTIONS_NAME, CLASS_AP_NAME = "predictions.txt", "class_ap.csv"


def run_evaluate_charades(params: Params) -> None:
    """Score the fine-tuned model (train.out_dir/final.pyth) on every video of
    charades.test_split: per-class sigmoid scores max-pooled over dataset.test_clips x
    test_crops views, mAP with the official script's semantics and the sklearn-style
    figure. Writes metrics.json, predictions.txt (the official format) and class_ap.csv
    to evaluate.out_dir."""
    spec = dataset_spec(params)
    checkpoint = trained_checkpoint(Path(params.train.out_dir) / ckpt.FINAL, "charades")
    split = params.evaluate.split
    try:
        videos = read_charades(spec.annotation_file(split))
    except (OSError, ValueError) as exc:
        raise StageFailed(f"evaluate: {exc}") from None
    classes = spec.class_names()
    truth = {v.id: {a.class_index for a in v.actions} for v in videos}
    fingerprint = digest(file_digest(checkpoint), params.dataset.model_dump(), params.evaluate.model_dump(),
                         spec.digest(), resolve_device(params, STAGE))
    started = time.monotonic()
    out = run_job(STAGE, CharadesEvaluateJob(params), params.launch,
                  Path(params.launch.log_dir) / STAGE / "running.json", fingerprint)
    scores = {video: np.asarray(s, np.float64) for video, s in out["scores"].items()}
    official, official_ap = charades_map(scores, truth, len(classes), variant="official")
    common, common_ap = charades_map(scores, truth, len(classes), variant="sklearn")
    out_dir = Path(params.evaluate.out_dir)
    missing = [v for v in truth if v not in scores]
    metrics = {
        "model": out["model"], "split": split, "videos": len(truth),
        "videos_without_actions": sum(not labels for labels in truth.values()),
        "missing": len(missing), "missing_ids": missing,
        # The official script's figure (None where it is NaN: a class without positives makes it so)
        "map": _finite(official), "map_official": _finite(official), "map_sklearn": _finite(common),
        "map_note": "map_official: Charades_v1_classify semantics (every ground-truth video, none predicted = "
                    "-inf, empty `actions` videos drop out, mean over every class); map_sklearn: "
                    "sklearn average_precision_score per class with positives, over the predicted videos",
        "views_per_video": out["views_per_video"], "test_crop": out["test_crop"],
        "gflops_per_view": out["gflops_per_view"],
        "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4), "params_m": out["params_m"],
        "failed_views": out["failed_views"],
    }
    write_json(out_dir / METRICS_NAME, metrics)
    write_charades_predictions(out_dir / PREDICTIONS_NAME, scores)
    positives = {c: sum(c in labels for labels in truth.values()) for c in range(len(classes))}
    write_csv(out_dir / CLASS_AP_NAME,
              [{"class": classes[c], "ap": "" if np.isnan(ap) else round(float(ap), 4), "positives": positives[c]}
               for c, ap in enumerate(official_ap)], ("class", "ap", "positives"))
    log.info("evaluate: %s on %d videos (%d missing, %d without actions) x %d views: mAP %s (official), "
             "%s (sklearn-style); %.1f s", out["model"], len(truth), len(missing), metrics["videos_without_actions"],
             out["views_per_video"], official, common, time.monotonic() - started)


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


class CharadesEvaluateJob(EvaluationJob):
    """The job's function: the test views of every stored video, max-pooled per video."""

    def run(self, device: torch.device) -> dict[str, Any]:
        p, e = self.params, self.params.evaluate
        model, cfg, state = load_network(Path(p.train.out_dir) / ckpt.FINAL, device)
        sampling = clip_sampling(p.dataset, p.model, weights=state)  # auto: the picks the model trained on
        logmel = p.spectrogram.out_dir if cfg.audio is not None else None
        dataset = ClipDataset(p.decode.out_dir, logmel, e.split, "test", sampling,
                              labels=dataset_spec(p).label_source(e.split), max_open_shards=p.dataset.max_open_shards)
        result = predict_views(model, cfg, dataset, batch_size=e.batch_size, device=device, workers=e.workers,
                               progress=True, pool="sigmoid_max")
        scores = {entry.youtube_id: [float(x) for x in s]
                  for entry, s, k in zip(dataset.entries, result.scores, result.predicted) if k}
        view = count_cost(cfg, sampling.test_crop)
        return {"model": cfg.name, "scores": scores, "views_per_video": sampling.test_clips * sampling.test_crops,
                "failed_views": len(result.failures), "gflops_per_view": round(view.gmacs, 4),
                "params_m": round(view.mparams, 4), "test_crop": sampling.test_crop}
