"""Charades (AVSlowFast A.6, Table 4): multi-label classification of whole videos.

    annotations   Charades_v1_<split>.csv, Charades_v1_classes.txt
    download      every video whole, once (its ``length`` rounded up to a whole second)
    labels        CharadesLabels: one sample per stored video; a clip's target, the multi-hot
                  of the actions active in it
    head, task    per-class sigmoid, BCE
    evaluate      dataset.test_clips uniform clips x test_crops per video, sigmoid scores
                  max-pooled; mAP with the official script's semantics (every ground-truth
                  video, none predicted = minus infinity, videos with an empty ``actions``
                  field drop out) and the sklearn-style figure beside it, each labelled;
                  results file ``predictions.txt`` (``id s1 ... sK``)
    summary       Table 4's shape; figure: AP per class (per_class.csv)
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from avsf.data.charades import CharadesLabels, read_charades, read_charades_classes
from avsf.data.demo import charades as demo
from avsf.data.kinetics import ManifestError, Segment
from avsf.io.atomic import write_csv
from pipeline.claims import Claim, Column, Report, by_arch, claims_metrics, hundred, with_seeds
from pipeline.datasets.base import Dataset, DownloadPlan, Flavour
from pipeline.launch import StageFailed
from pipeline.layout import PER_CLASS_NAME, RESULTS_DIR
from pipeline.params import FinetuneDatasetSection
from pipeline.tables import LABELS, markdown_table, percent

CLASSES_FILE = "Charades_v1_classes.txt"


class CharadesSection(FinetuneDatasetSection):
    """datasets.charades: Charades_v1_<split>.csv and Charades_v1_classes.txt in ``annotations``."""

    train_split: str = "train"
    test_split: str = "test"


def _counts(plan: list) -> dict[str, Any]:
    return {"by_split": dict(Counter(v.split for v in plan)), "without_actions": sum(not v.actions for v in plan),
            "actions": sum(len(v.actions) for v in plan), "video_seconds": round(sum(v.length for v in plan), 2)}


class Charades(Dataset):
    Section = CharadesSection
    flavour = Flavour(demo.CharadesWorldSpec, demo.plan_charades_world, demo.write_charades_video,
                      demo.write_charades_annotations, lambda v: f"{v.id}.mp4", _counts)
    finetunable = True
    heads = ("classification",)
    pool = "sigmoid_max"
    title = "Charades"
    per_class_value, per_class_format = "AP", ".0%"  # (the default figure: AP per class of every member)

    def annotation(self, split: str, root: Path | None = None) -> Path:
        return (root or self.files) / f"Charades_v1_{split}.csv"

    def annotation_files(self, root: Path) -> list[Path]:
        return [*(self.annotation(s, root) for s in dict.fromkeys((self.train_split, self.test_split))),
                root / CLASSES_FILE]

    def read(self, split: str, stage: str) -> list:
        try:
            return read_charades(self.annotation(split))
        except (OSError, ManifestError, ValueError) as exc:
            raise StageFailed(f"{stage}: {exc}") from None

    def download_plan(self) -> DownloadPlan:
        segments: dict[str, Segment] = {}
        for split in dict.fromkeys((self.train_split, self.test_split)):
            for v in self.read(split, "download"):
                segments.setdefault(v.id, Segment(v.id, 0.0, float(math.ceil(v.length)), split))
        return DownloadPlan(list(segments.values()), total_rows=len(segments))

    def class_names(self) -> list[str]:
        return read_charades_classes(self.files / CLASSES_FILE)

    def head(self, model, target=None, objective="labels"):
        from avsf.models import HeadConfig

        return HeadConfig(kind="classification", num_classes=len(self.class_names()), dropout=model.dropout,
                          activation="sigmoid", test_pool=model.test_pool)

    def task(self, target=None, objective="labels"):
        from avsf.train.tasks import MultiLabel

        return MultiLabel()

    def label_source(self, split: str):
        return CharadesLabels(read_charades(self.annotation(split)), len(self.class_names()))

    # ------------------------------------------------------------------ evaluation

    def evaluation_truth(self) -> dict[str, Any]:
        videos = self.read(self.test_split, "evaluate")
        return {"truth": {v.id: {a.class_index for a in v.actions} for v in videos}, "classes": self.class_names()}

    def predict(self, model, cfg, clips, device, settings) -> dict[str, Any]:
        from avsf.evaluate.views import predict_views

        result = predict_views(model, cfg, clips, batch_size=settings.batch_size, device=device,
                               workers=settings.workers, progress=True, pool="sigmoid_max")
        scores = {entry.youtube_id: [float(x) for x in s]
                  for entry, s, k in zip(clips.entries, result.scores, result.predicted) if k}
        return {"scores": scores, "failures": result.failures}

    def score(self, run, out, truth, out_dir: Path) -> tuple[dict[str, Any], str]:
        from avsf.evaluate.charades import charades_map, write_charades_predictions

        classes, labels = truth["classes"], truth["truth"]
        prediction = out["splits"][self.test_split][None]
        scores = {video: np.asarray(s, np.float64) for video, s in prediction["scores"].items()}
        official, official_ap = charades_map(scores, labels, len(classes), variant="official")
        common, _ = charades_map(scores, labels, len(classes), variant="sklearn")
        missing = [v for v in labels if v not in scores]
        metrics = {
            "model": out["model"], "split": self.test_split, "videos": len(labels),
            "videos_without_actions": sum(not c for c in labels.values()),
            "missing": len(missing), "missing_ids": missing,
            # The official script's figure (None where it is NaN: a class without positives makes it so)
            "map": _finite(official), "map_official": _finite(official), "map_sklearn": _finite(common),
            "map_note": "map_official: Charades_v1_classify semantics (every ground-truth video, none predicted = "
                        "-inf, empty `actions` videos drop out, mean over every class); map_sklearn: "
                        "sklearn average_precision_score per class with positives, over the predicted videos",
            "views_per_video": out["views_per_video"], "test_crop": out["test_crop"],
            "gflops_per_view": out["gflops_per_view"],
            "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4), "params_m": out["params_m"],
            "failed_views": len(prediction["failures"]),
        }
        write_charades_predictions(out_dir / RESULTS_DIR / "predictions.txt", scores)
        positives = {c: sum(c in v for v in labels.values()) for c in range(len(classes))}
        write_csv(out_dir / PER_CLASS_NAME,
                  [{"class": classes[c], "value": "" if np.isnan(ap) else round(float(ap), 4), "count": positives[c]}
                   for c, ap in enumerate(official_ap)], ("class", "value", "count"))
        line = (f"{out['model']} on {len(labels)} videos ({len(missing)} missing, {metrics['videos_without_actions']} "
                f"without actions) x {out['views_per_video']} views: mAP {official} (official), {common} (sklearn-style)")
        return metrics, line

    # ------------------------------------------------------------------ summary

    def summary(self, results, experiments, params) -> tuple[str, dict[str, Any]]:
        metrics = {name: {"map": m["map_official"], "map_sklearn": m["map_sklearn"]} for name, m in results.items()}
        metrics["claims"] = claims_metrics(seeds_report(), experiments, params.train.seed, results)
        return with_seeds(summary_markdown(results), seeds_report(), experiments), metrics


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def claims(results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The paper's claim on the official mAP; on the sklearn-style one, said so, where the
    official figure is undefined (a class without a positive in the split makes it NaN)."""
    of_arch = by_arch(results)
    av, sf = of_arch.get("avslowfast"), of_arch.get("slowfast")
    claim = "AVSlowFast beats SlowFast in mAP (the paper: 42.5 -> 43.7)"
    if av and sf and av["map_official"] is not None and sf["map_official"] is not None:
        return [Claim("map", claim + ", official", av["map_official"], sf["map_official"], about=("avslowfast", "slowfast"))]
    return [Claim("map", claim + ", sklearn-style (the official mAP is undefined here)", av and av["map_sklearn"],
                  sf and sf["map_sklearn"], about=("avslowfast", "slowfast"))]


def seeds_report() -> Report:
    """The seeds' section: both mAPs, the claim."""
    return Report("charades", claims, [Column("mAP (official)", lambda m: hundred(m["map_official"])),
                                       Column("mAP (sklearn-style)", lambda m: hundred(m["map_sklearn"]))])


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    rows = [[f"{LABELS.get(m['arch'], name)} (`{m['model']}`)", percent(m["map_official"]), percent(m["map_sklearn"]),
             f"{m['params_m']:.3f}", f"{m['gflops_per_view']:.3f} x {m['views_per_video']}"]
            for name, m in results.items()]
    return "\n".join([
        "# Charades: fine-tuned from Kinetics (AVSlowFast Table 4's shape, in miniature)", "",
        f"Split `{first['split']}`: {first['videos']} videos ({first['videos_without_actions']} with an empty `actions` "
        f"field, {first['missing']} without a prediction). Scores: per-class sigmoid, max-pooled over "
        f"{first['views_per_video']} views. mAP (official): the official script's semantics (every ground-truth video; "
        f"one without a prediction scores minus infinity; videos with an empty `actions` field drop out; mean over "
        f"every class). mAP (sklearn-style): per class with positives, over the predicted videos, ties grouped.", "",
        *markdown_table(["model", "mAP (official)", "mAP (sklearn-style)", "params (M)", "GFLOPs x views"], rows), "",
        "## The paper's claim on this run", "",
        *(claim.line for claim in claims(results)),
    ]) + "\n"
