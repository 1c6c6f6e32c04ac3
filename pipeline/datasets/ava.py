"""AVA action detection (AVSlowFast A.7, SlowFast Sec. 5, Table 7).

    annotations   ava_<split>_v2.2.csv (ground truth), ava_action_list_v2.2.pbtxt (every class
                  trained), ava_action_list_v2.2_for_activitynet_2019.pbtxt (the 60 scored),
                  ava_<split>_excluded_timestamps_v2.2.csv, ava_<split>_predicted_boxes.csv
                  (a person detector's boxes: training adds those matching a true box, test
                  uses them alone)
    download      each movie from second 900 (or the file's start, if later) to 2 s past its
                  last keyframe, in the times of a file whose t = 0 is movie second ``movie_start_s``
    decode        every movie at 30 fps, so that keyframe s is store frame (s - 900) x 30
    labels        AvaKeyframes: one sample per keyframe, its boxes and their multi-hot actions
    head, task    res5 at stride 1 and dilation 2, RoIAlign, per-class sigmoid; BCE per box
    evaluate      one clip per keyframe, centred, fully convolutional on the whole frame; the
                  official frame-mAP over the evaluated classes; results file detections.csv.
                  Kinds of action: the demo's cues (pose, movement, motion, sound) for the
                  demo's classes, the label map's ``label_type`` otherwise
    summary       Table 7's shape, mean AP per kind of action and AP per class; figure: AP per
                  class, most frequent first, coloured by kind of action
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from avsf.data.ava import (
    AVA_LAST_SECOND,
    AVA_STORE_FPS,
    AvaDetection,
    AvaFormatError,
    read_action_list,
    read_ava_detections,
    read_ava_ground_truth,
    read_excluded_timestamps,
    read_label_types,
    store_start_second,
    write_ava_detections,
)
from avsf.data.ava_clips import DETECTION_SCORE, TRAIN_IOU, AvaKeyframes
from avsf.data.demo import ava as demo
from avsf.data.kinetics import Segment
from avsf.io.atomic import write_csv
from pipeline.claims import Claim, Column, Report, by_arch, claims_metrics, hundred, with_seeds
from pipeline.datasets.base import Dataset, DownloadPlan, Flavour
from pipeline.figures import Figure, grouped_bars, model_labels, number
from pipeline.launch import StageFailed
from pipeline.layout import PER_CLASS_NAME, RESULTS_DIR
from pipeline.params import FinetuneDatasetSection
from pipeline.tables import LABELS, markdown_table, percent

log = logging.getLogger("avsf.figures")

ACTIONS, EVALUATED = "ava_action_list_v2.2.pbtxt", "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
GROUND_TRUTH, DETECTIONS = "ava_{split}_v2.2.csv", "ava_{split}_predicted_boxes.csv"
EXCLUDED = "ava_{split}_excluded_timestamps_v2.2.csv"
CLIP_MARGIN_S = 2.0  # the store keeps this much film past a movie's last keyframe (1800 for AVA's 1798)


class AvaSection(FinetuneDatasetSection):
    """datasets.ava. Each movie is stored from second 900 to 1800 at 30 fps; ``movie_start_s``
    says which movie second a source file's t = 0 is: 0 for a whole film, 900 for a segment
    trimmed at 900 (PySlowFast's files)."""

    train_split: str = "train"
    test_split: str = "val"
    movie_start_s: float = Field(0.0, ge=0, le=1800)
    detection_score: float = Field(DETECTION_SCORE, ge=0, le=1)  # person boxes used: the detector's score at least this
    train_iou: float = Field(TRAIN_IOU, gt=0, le=1)  # training adds detections overlapping a true box at least this


def _counts(plan: list) -> dict[str, Any]:
    return {"movies": dict(Counter(m.split for m in plan)),
            "person_keyframes": sum(len(k.people) for m in plan for k in m.keyframes)}


class Ava(Dataset):
    Section = AvaSection
    flavour = Flavour(demo.AvaWorldSpec, demo.plan_ava_world, demo.write_ava_movie, demo.write_ava_annotations,
                      lambda m: m.file_name, _counts)
    finetunable = True
    heads = ("ava",)
    title = "AVA"
    per_class_value, per_class_format = "AP", ".0%"

    def file(self, pattern: str, split: str = "", root: Path | None = None) -> Path:
        return (root or self.files) / pattern.format(split=split)

    def annotation_files(self, root: Path) -> list[Path]:
        splits = dict.fromkeys((self.train_split, self.test_split))
        required = [*(self.file(GROUND_TRUTH, s, root) for s in splits), root / ACTIONS, root / EVALUATED]
        optional = [self.file(p, s, root) for s in splits for p in (EXCLUDED, DETECTIONS)]
        return [*required, *(p for p in optional if p.is_file())]

    def demo_settings(self) -> dict[str, Any]:
        # (the demo's file offset is one fact: movie_start_s, which the pipeline reads too)
        return {**self.section.demo, "movie_start_s": self.section.movie_start_s}

    def check(self, params) -> None:
        if "movie_start_s" in self.section.demo:
            raise ValueError(f"datasets.{self.name}.demo.movie_start_s: the demo's file offset is "
                             f"datasets.{self.name}.movie_start_s (one value for the demo and the pipeline)")

    @property
    def store_start_s(self) -> float:
        """The movie second the store's frame 0 shows."""
        return store_start_second(self.section.movie_start_s)

    def download_plan(self) -> DownloadPlan:
        """One segment per movie of the ground-truth files: from movie second 900 (or the
        file's start, if later) to 2 s past its last keyframe (1800 for AVA's 1798), in the
        times of a source file whose t = 0 is movie second ``movie_start_s``."""
        last: dict[str, tuple[int, str]] = {}
        for split in dict.fromkeys((self.train_split, self.test_split)):
            try:
                _, keyframes = read_ava_ground_truth(self.file(GROUND_TRUTH, split))
            except (OSError, AvaFormatError) as exc:
                raise StageFailed(f"download: {exc}") from None
            for video_id, timestamp in sorted(keyframes):
                last[video_id] = (max(timestamp, last.get(video_id, (0, split))[0]), split)
        offset = self.section.movie_start_s
        start = self.store_start_s - offset
        segments = [Segment(video_id, start, min(float(AVA_LAST_SECOND), ts + CLIP_MARGIN_S) - offset, split)
                    for video_id, (ts, split) in last.items()]
        return DownloadPlan(segments, total_rows=len(segments))

    def decode_settings(self, decode):
        return decode.model_copy(update={"fps": AVA_STORE_FPS})

    # ------------------------------------------------------------------ training

    def action_names(self) -> dict[int, str]:
        """Action id -> name of every class trained on (the action list)."""
        return read_action_list(self.files / ACTIONS)

    def class_names(self) -> list[str]:
        return list(self.action_names().values())

    def head(self, model, target=None, objective="labels"):
        from avsf.models import HeadConfig

        return HeadConfig(kind="ava", num_classes=len(self.class_names()), dropout=model.dropout, activation="sigmoid")

    def task(self, target=None, objective="labels"):
        from avsf.train.tasks import Detection

        return Detection()

    def label_source(self, split: str):
        truth, _ = read_ava_ground_truth(self.file(GROUND_TRUTH, split))
        detections_path = self.file(DETECTIONS, split)
        if not detections_path.is_file() and split != self.train_split:
            raise ValueError(f"AVA's test boxes are a person detector's: {detections_path.name} is missing from "
                             f"{self.section.annotations} (put your detector's boxes there, in the ground truth's "
                             f"CSV layout with a score)")
        detections = read_ava_detections(detections_path) if detections_path.is_file() else []
        return AvaKeyframes(list(self.action_names()), truth, detections,
                            mode="train" if split == self.train_split else "test",
                            detection_score=self.section.detection_score, train_iou=self.section.train_iou,
                            movie_start_s=self.store_start_s)

    def validation_sampling(self, sampling):
        """One clip per keyframe: the whole frame at test_scale (fully convolutional), its
        boxes where the detector put them."""
        return replace(sampling, test_clips=1, test_crops=1, test_full_frame=True)

    def test_sampling(self, sampling):
        return self.validation_sampling(sampling)

    def record(self) -> dict[str, Any]:
        return {**super().record(), "detection_score": self.section.detection_score,
                "train_iou": self.section.train_iou, "store_start_s": self.store_start_s}

    # ------------------------------------------------------------------ evaluation

    def action_groups(self, names: dict[int, str]) -> dict[str, str]:
        """Action name -> its kind: the demo's cue for the demo's actions, else the label
        map's label_type (person movement, object manipulation, person interaction)."""
        cues = demo.ava_cue_groups()
        if names and all(name in cues for name in names.values()):
            return cues
        types = read_label_types(self.files / ACTIONS)
        return {name: types[c].lower().replace("_", " ") for c, name in names.items() if c in types}

    def evaluation_truth(self) -> dict[str, Any]:
        split = self.test_split
        try:
            truth, keyframes = read_ava_ground_truth(self.file(GROUND_TRUTH, split))
            excluded_path = self.file(EXCLUDED, split)
            excluded = read_excluded_timestamps(excluded_path) if excluded_path.is_file() else set()
            evaluated = list(read_action_list(self.files / EVALUATED))
            names = self.action_names()
        except (OSError, ValueError) as exc:
            raise StageFailed(f"evaluate: {exc}") from None
        return {"truth": truth, "keyframes": keyframes, "excluded": excluded, "evaluated": evaluated, "names": names}

    def predict(self, model, cfg, clips, device, settings) -> dict[str, Any]:
        from avsf.evaluate.views import predict_boxes

        result = predict_boxes(model, cfg, clips, list(self.action_names()), batch_size=settings.batch_size,
                               device=device, workers=settings.workers, progress=True)
        return {"detections": result.rows, "keyframes": result.samples, "boxes": result.boxes,
                "failures": result.failures}

    def view_cost(self, cfg, sampling):
        import torch

        from avsf.models.flops import count_cost

        side = sampling.test_scale  # (counted on a square view of the short side, one box over it)
        return count_cost(cfg, side, boxes=torch.tensor([[0.0, 0.0, 0.0, side, side]], device="meta"))

    def score(self, run, out, truth, out_dir: Path) -> tuple[dict[str, Any], str]:
        from avsf.evaluate.ava import frame_map, per_class_ap_table

        prediction = out["splits"][self.test_split][None]
        detections = [AvaDetection(v, int(ts), tuple(box), int(a), float(s)) for v, ts, box, a, s in prediction["detections"]]
        keyframes, excluded, names = truth["keyframes"], truth["excluded"], truth["names"]
        result = frame_map(truth["truth"], keyframes, detections, truth["evaluated"], excluded)
        table = per_class_ap_table(result, names)
        write_ava_detections(out_dir / RESULTS_DIR / "detections.csv", detections)
        write_csv(out_dir / PER_CLASS_NAME, [{"class": row.name, "value": "" if row.ap is None else round(row.ap, 4),
                                               "count": row.count} for row in table], ("class", "value", "count"))
        groups = self.action_groups(names)
        by_group: dict[str, list[float]] = {}
        for row in table:
            by_group.setdefault(groups.get(row.name, "other"), []).append(row.ap)
        metrics = {
            "model": out["model"], "split": self.test_split, "map": result.mean_ap,
            "class_ap": {names.get(c, str(c)): ap for c, ap in result.class_ap.items()},
            "class_count": {names.get(c, str(c)): n for c, n in result.class_count.items()},
            "group_map": {g: float(np.mean(aps)) for g, aps in sorted(by_group.items())},
            "evaluated_classes": len(truth["evaluated"]), "keyframes": len(keyframes - excluded),
            "excluded": len(excluded), "keyframes_predicted": prediction["keyframes"], "boxes": prediction["boxes"],
            "failed_clips": len(prediction["failures"]), "gflops_per_view": out["gflops_per_view"],
            "params_m": out["params_m"], "test_scale": out["test_scale"],
        }
        line = (f"{out['model']} on {metrics['keyframes']} keyframes ({len(excluded)} excluded), {prediction['boxes']} "
                f"detected boxes: frame-mAP {'-' if result.mean_ap is None else f'{result.mean_ap:.3f}'} over "
                f"{len(truth['evaluated'])} classes")
        return metrics, line

    # ------------------------------------------------------------------ summary

    def summary(self, results, experiments, params) -> tuple[str, dict[str, Any]]:
        metrics = {name: {"map": m["map"], **{f"map_{g}": v for g, v in m["group_map"].items()}}
                   for name, m in results.items()}
        report = seeds_report(results)
        metrics["claims"] = claims_metrics(report, experiments, params.train.seed, results)
        return with_seeds(summary_markdown(results), report, experiments), metrics

    def figures(self, results, params) -> list[Figure]:
        """AP per class of every member (metrics.json's class_ap, as the summary's table), the
        most frequent class first (SlowFast Fig. 3), coloured by kind of action as the
        evaluation groups them (group_map)."""
        labels = model_labels(results)
        counts = next(iter(results.values()))["class_count"]
        order = by_frequency(counts)
        kinds = self.class_kinds(order)
        rows = [{"model": labels[name], "class": c, "boxes": counts[c], "kind": kinds.get(c, "other"),
                 "ap": number(m["class_ap"].get(c))} for c in order for name, m in results.items()]
        title = f"{self.title}: AP per class, most frequent first, by kind of action"
        return [Figure("class_ap", title, grouped_bars(title, rows, "class", "ap", "AP", color="kind", opacity="model",
                                                       order=order, fmt=self.per_class_format))]

    def class_kinds(self, classes: list[str]) -> dict[str, str]:
        """Action name -> its kind (:meth:`action_groups`) for action names ``classes``: the
        demo's without reading a file; real AVA's from the label map download copied (every
        action "other" where it is not there, with a warning)."""
        cues = demo.ava_cue_groups()
        if classes and all(c in cues for c in classes):
            return cues
        try:
            return self.action_groups(self.action_names())
        except (OSError, ValueError) as exc:
            log.warning("figures: no kinds of action for AVA's figure (%s)", exc)
            return {}


def by_frequency(counts: dict[str, int]) -> list[str]:
    """Classes most frequent first (SlowFast Fig. 3), by name among equals."""
    return sorted(counts, key=lambda c: (-counts[c], c))


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    groups = sorted({g for m in results.values() for g in m["group_map"]})
    rows = [[f"{LABELS.get(m['arch'], name)} (`{m['model']}`)", percent(m["map"]),
             *(percent(m["group_map"].get(g)) for g in groups), f"{m['params_m']:.3f}", f"{m['gflops_per_view']:.3f}"]
            for name, m in results.items()]
    classes = by_frequency(first["class_count"])
    class_rows = [[c, str(first["class_count"][c]), *(percent(m["class_ap"].get(c)) for m in results.values())]
                  for c in classes]
    return "\n".join([
        "# AVA: action detection fine-tuned from Kinetics (AVSlowFast Table 7's shape, in miniature)", "",
        f"Split `{first['split']}`: {first['keyframes']} keyframes scored ({first['excluded']} excluded), "
        f"{first['boxes']} detected person boxes; frame-mAP at IoU 0.5 with the official evaluator's semantics over "
        f"the {first['evaluated_classes']} evaluated classes (top 50 detections per keyframe). Mean AP by kind of "
        f"action: pose (the person's shape), movement and motion (what moves), sound (what it sounds like). "
        f"GFLOPs: one clip, a square view of the short side ({first['test_scale']} px) with one box.", "",
        *markdown_table(["model", "frame-mAP", *(f"{g} mAP" for g in groups), "params (M)", "GFLOPs"], rows), "",
        "## AP per class (most frequent first, as SlowFast Fig. 3)", "",
        *markdown_table(["class", "boxes", *(LABELS.get(m["arch"], n) for n, m in results.items())], class_rows), "",
        "## The paper's claims on this run", "",
        *(claim.line for claim in claims(results)),
    ]) + "\n"


def claims(results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The papers' claims on one run's per-member metrics (the first member of each arch)."""
    of_arch = by_arch(results)
    av, sf = of_arch.get("avslowfast"), of_arch.get("slowfast")

    def group(m: dict | None, g: str) -> float | None:
        value = m["group_map"].get(g) if m else None
        return None if value is None else 100 * value

    pair = ("avslowfast", "slowfast")
    return [Claim("sound", "AVSlowFast beats SlowFast on the actions defined by their sound", group(av, "sound"),
                  group(sf, "sound"), "%", about=pair),
            Claim("map", "AVSlowFast beats SlowFast in frame-mAP (the paper: 27.3 -> 28.6)",
                  av and 100 * (av["map"] or 0), sf and 100 * (sf["map"] or 0), "%", about=pair)]


def seeds_report(results: dict[str, dict[str, Any]]) -> Report:
    """The seeds' section: frame-mAP and the mean AP of each kind of action, the claims."""
    groups = sorted({g for m in results.values() for g in m["group_map"]})
    return Report("ava", claims, [Column("frame-mAP", lambda m: hundred(m["map"])),
                                  *(Column(f"{g} mAP", lambda m, g=g: hundred(m["group_map"].get(g))) for g in groups)])
