"""Kinetics (AVSlowFast Tables 3, 5, A.3; SlowFast Table 2): the dataset the family is trained
on from scratch, and the self-supervised pretraining's store.

    annotations   Kinetics-format manifests (label,youtube_id,time_start,time_end,split,is_cc;
                  test manifests without a label column too), ``manifests`` in ``annotations``
    download      one clip per manifest row, named as the official crawler names it
    labels        the store's own (clips.csv's label, classes.json: every label of the manifests)
    head, task    K classes, softmax cross-entropy; the rotation pretext's 4-way head
    evaluate      the multi-view test (softmax averaged per video), scored over every manifest
                  row of the test split: a video with no prediction is a miss (the official
                  figure; the figure over the available videos beside it). Groups: the demo's
                  cues for the demo's classes, Kinetics-Sounds (AVSlowFast App. B) otherwise
    summary       Tables 5 / A.3's shape with the papers' claims, seeds and ablations; figures:
                  the family's curves, top-1 per class by cue, AVSlowFast's per-class gain over
                  SlowFast (AVSlowFast Fig. 3) and its confusion matrix
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from avsf.data.demo import kinetics as demo
from avsf.data.kinetics import ManifestError, class_names, read_manifest
from avsf.data.ledger import Failure
from avsf.io.atomic import write_csv
from pipeline.claims import Claim, Column, Report, by_arch, claims_metrics, composite, hundred, seeds_section, spread
from pipeline.datasets.base import Dataset, DownloadPlan, Flavour
from pipeline.figures import (Figure, by_cue, confusion_figure, curves_figure, family_curves, first_of_arch,
                              gain_figure, grouped_bars, missing_inputs, model_labels, number)
from pipeline.launch import StageFailed
from pipeline.layout import PER_CLASS_NAME, REPORTS, RESULTS_DIR
from pipeline.params import SplitDatasetSection
from pipeline.tables import LABELS, percent

NO_PREDICTION = "(no prediction)"
DEMO_GROUPS = ("appearance", "motion", "sound", "audiovisual")


class KineticsSection(SplitDatasetSection):
    """datasets.kinetics: the manifests (file names in ``annotations``) and where their videos are."""

    manifests: list[str] = Field(min_length=1)
    train_split: str = "train"
    test_split: str = "val"


def _counts(videos: list[demo.DemoVideo]) -> dict[str, Any]:
    present = [v for v in videos if v.scene is not None]
    return {"rows": len(videos), "videos": len(present), "by_split": dict(Counter(v.split for v in videos)),
            "by_class": dict(Counter(v.label for v in videos)),
            "without_audio": sum(v.scene.sample_rate is None for v in present), "corrupt": sum(v.corrupt for v in videos),
            "missing_sources": len(videos) - len(present),
            "video_seconds": round(sum(v.scene.duration for v in present), 2)}


def read_manifests(paths: list[Path]) -> DownloadPlan:
    """Segments of every manifest, each clip id once; unusable and repeated rows become
    failures. The class list: every label a row names, unusable rows included, so that no
    class drops out (and shifts the later ones) because its rows are bad."""
    segments, failures, seen, total, invalid = [], [], set(), 0, []
    for path in paths:
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            raise StageFailed(f"download: {exc}") from None
        total += manifest.total_rows
        invalid += manifest.invalid
        failures += [Failure(bad.where, "download", "bad_manifest_row", bad.detail) for bad in manifest.invalid]
        for s in manifest.segments:
            if s.clip_id in seen:
                failures.append(Failure(s.clip_id, "download", "bad_manifest_row", f"repeated in {path}"))
                continue
            seen.add(s.clip_id)
            segments.append(s)
    return DownloadPlan(segments, failures, total, class_names([*segments, *invalid]))


def class_groups(classes: list[str]) -> dict[str, str]:
    """Class name -> group: the demo's cues for the demo's classes, else Kinetics-Sounds."""
    from avsf.data.demo.world import CLASS_BY_NAME, demo_cue_groups
    from avsf.evaluate.classification import kinetics_sounds_groups

    if classes and all(c in CLASS_BY_NAME for c in classes):
        return demo_cue_groups()
    return kinetics_sounds_groups(classes)


def class_cues(classes: list[str]) -> dict[str, str]:
    """Class -> its group as the evaluation reports it (class_groups), "all classes" for every
    class when none has a group."""
    groups = class_groups(classes)
    return {c: groups[c] for c in classes if c in groups} if groups else {c: "all classes" for c in classes}


class Kinetics(Dataset):
    Section = KineticsSection
    flavour = Flavour(demo.KineticsWorldSpec, demo.plan_world, demo.write_raw_video, demo.write_manifests,
                      lambda v: f"{v.youtube_id}.mp4", _counts)
    pretraining = True
    title = "Kinetics"
    per_class_value = "top-1 (%)"

    def annotation_files(self, root: Path) -> list[Path]:
        return [root / name for name in self.section.manifests]

    def download_plan(self) -> DownloadPlan:
        return read_manifests(self.annotation_files(self.files))

    def digest(self) -> dict[str, str]:
        return {}  # a run reads its labels from the store, whose identity its fingerprint holds

    def members(self, params) -> list[str]:
        return list(params.family)

    def store_classes(self) -> list[str]:
        from avsf.data.store import CLASSES_NAME  # (here: download@kinetics needs no store code, nor h5py)

        frames = self.layout.frames(self.name)
        try:
            return json.loads((frames / CLASSES_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise StageFailed(f"cannot read the frame store {frames}: {exc}") from None

    def head(self, model, target=None, objective="labels"):
        from avsf.models import HeadConfig

        if objective == "rotation":
            from avsf.data.rotation import ROTATIONS

            return HeadConfig(kind="classification", num_classes=ROTATIONS, dropout=model.dropout,
                              activation="softmax", test_pool=model.test_pool)
        return HeadConfig(kind=model.head, num_classes=model.num_classes, dropout=model.dropout,
                          activation="softmax", test_pool=model.test_pool)

    def task(self, target=None, objective="labels"):
        from avsf.train.tasks import Classification, Rotation, SyncOnly

        return {"rotation": Rotation, "sync": SyncOnly}.get(objective, Classification)()

    def label_source(self, split: str):
        return None  # the store's own labels (clips.csv)

    # ------------------------------------------------------------------ evaluation

    def evaluation_truth(self) -> dict[str, Any]:
        """Every labelled manifest video of the test split (clip id -> class index): the
        official denominator, whatever failed to download or decode."""
        classes = self.store_classes()
        index, labels = {c: i for i, c in enumerate(classes)}, {}
        where = self.layout.frames(self.name) / "classes.json"
        for path in self.annotation_files(self.files):
            try:
                manifest = read_manifest(path)
            except ManifestError as exc:
                raise StageFailed(f"evaluate: {exc}") from None
            for seg in manifest.segments:
                if seg.split == self.test_split and seg.label is not None:
                    if seg.label not in index:
                        raise StageFailed(f"evaluate: {path.name} names class {seg.label!r}, which {where} "
                                          f"does not have")
                    labels.setdefault(seg.clip_id, index[seg.label])
        if not labels:
            raise StageFailed(f"evaluate: the manifests have no labelled row in split {self.test_split!r}")
        return {"classes": classes, "labels": labels}

    def predict(self, model, cfg, clips, device, settings) -> dict[str, Any]:
        from avsf.evaluate.views import predict_views

        result = predict_views(model, cfg, clips, batch_size=settings.batch_size, device=device,
                               workers=settings.workers, progress=True)
        scores = result.scores_by_id([e.clip_id for e in clips.entries])
        return {"scores": {k: [float(x) for x in v] for k, v in scores.items()}, "views": int(result.views.sum()),
                "failures": result.failures}

    def score(self, run, out, truth, out_dir: Path) -> tuple[dict[str, Any], str]:
        from avsf.evaluate.classification import classification_report, ranked_classes

        classes, labels = truth["classes"], truth["labels"]
        prediction = out["splits"][self.test_split][None]
        # (a stored clip no manifest row of the split names is not scored)
        scores = {clip: np.asarray(s) for clip, s in prediction["scores"].items() if clip in labels}
        report = classification_report(labels, scores, classes, class_groups(classes)).to_dict()
        crops = run.params.dataset.test_crops
        metrics = {
            "model": out["model"], "split": self.test_split, "epochs": out["checkpoint_epoch"],
            "views": f"{out['views_per_video'] // crops} clips x {crops} crops",
            "views_per_video": out["views_per_video"], "test_crop": out["test_crop"],
            "gflops_per_view": out["gflops_per_view"],
            "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4), "params_m": out["params_m"],
            "top1": report["official"]["top1"],  # the official figure: a missing video is a miss
            "top5": report["official"]["top5"],
            "mean_class_accuracy": report["official"]["mean_class_accuracy"],
            "official": report["official"], "available": report["available"], "missing": report["missing"],
            "missing_ids": report["missing_ids"], "failed_views": len(prediction["failures"]),
        }
        rows = []
        for clip, label in sorted(labels.items()):
            s = scores.get(clip)
            if s is None:
                rows.append({"clip_id": clip, "label": classes[label], "predicted": NO_PREDICTION, "score": "", "top5": ""})
                continue
            order = ranked_classes(s)
            rows.append({"clip_id": clip, "label": classes[label], "predicted": classes[order[0]],
                         "score": f"{s[order[0]]:.4f}", "top5": ";".join(f"{classes[c]}:{s[c]:.4f}" for c in order[:5])})
        results = out_dir / RESULTS_DIR
        write_csv(results / "predictions.csv", rows, ("clip_id", "label", "predicted", "score", "top5"))
        write_csv(results / "confusion.csv", [{"actual": r["label"], "predicted": r["predicted"]} for r in rows],
                  ("actual", "predicted"))
        write_csv(out_dir / PER_CLASS_NAME, [{"class": name, "value": round(100 * c["top1"], 2), "count": c["videos"]}
                                              for name, c in report["official"]["per_class"].items()
                                              if c["top1"] is not None], ("class", "value", "count"))
        o, a = report["official"], report["available"]
        line = (f"{out['model']} on {o['videos']} videos ({report['missing']} missing) x {out['views_per_video']} views: "
                f"top-1 {_figure(o['top1'])}, top-5 {_figure(o['top5'])} (official; {_figure(a['top1'])}, "
                f"{_figure(a['top5'])} over the {a['videos']} available), {metrics['failed_views']} views failed to load")
        return metrics, line

    # ------------------------------------------------------------------ summary

    def summary(self, results, experiments, params) -> tuple[str, dict[str, Any]]:
        metrics = {name: {"top1": m["top1"], "top5": m["top5"],
                          **{f"{g}_top1": v["top1"] for g, v in m["official"]["groups"].items()}}
                   for name, m in results.items()}
        metrics["claims"] = claims_metrics(seeds_report(_groups(results)), experiments, params.train.seed, results)
        return summary_markdown(results, experiments), metrics

    def figures(self, results, params) -> list[Figure]:
        """The family's training and validation curves (DVCLive's, per epoch), top-1 per class
        (the official figures of metrics.json, as the table) of every member by cue,
        AVSlowFast's per-class gain over SlowFast (AVSlowFast Fig. 3) and its confusion
        (results/confusion.csv)."""
        labels = model_labels(results)
        figures = []
        live_dirs = {m: self.layout.run(self.name, m).live_dir for m in results}
        if not missing_inputs([d / REPORTS["epochs"] for d in live_dirs.values()], f"{self.title} curves"):
            figures.append(curves_figure(f"{self.title}: training and validation curves of the family",
                                         family_curves(live_dirs, labels)))
        per_class = {m: r["official"]["per_class"] for m, r in results.items()}
        cues = class_cues(list(dict.fromkeys(c for classes in per_class.values() for c in classes)))
        rows = [{"cue": cues[c], "class": c, "model": labels[m], "top1": number(per_class[m][c]["top1"]),
                 "videos": per_class[m][c]["videos"]}
                for c in by_cue(cues, cues) for m in results if c in per_class[m]]
        title = f"{self.title}: top-1 per class of every member, by cue"
        figures.append(Figure("per_class", title, grouped_bars(title, rows, "class", "top1", "top-1", group="cue",
                                                               fmt=".0%")))
        av, sf = first_of_arch(results, "avslowfast"), first_of_arch(results, "slowfast")
        if av and sf:
            figures.append(gain_figure(self.title, labels[av], labels[sf],
                                       {c: v["top1"] for c, v in per_class[av].items()},
                                       {c: v["top1"] for c, v in per_class[sf].items()}, cues))
        confusion = av and self.layout.model(self.name, av) / RESULTS_DIR / "confusion.csv"
        if confusion and not missing_inputs([confusion], f"{self.title} confusion"):
            figures.append(confusion_figure(confusion, f"{self.title}: confusion of {labels[av]} (videos)",
                                            by_cue(per_class[av], cues), NO_PREDICTION))
        return figures


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def claims(results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The papers' claims in miniature, on one run's per-member metrics (each not measured
    when a member it needs is missing)."""
    of_arch = by_arch(results)

    def group(arch: str, name: str) -> float | None:
        m = of_arch.get(arch)
        g = m and m["official"]["groups"].get(name)
        return None if not g else g["top1"]

    out = [Claim(key, text, group(a, g), group(b, g), about=(a, b)) for key, text, (a, b, g) in (
        ("slowfast_motion", "SlowFast beats Slow-only on the motion classes", ("slowfast", "slow", "motion")),
        ("avslowfast_sound", "AVSlowFast beats SlowFast on the sound classes", ("avslowfast", "slowfast", "sound")),
    )]
    # Audio-only: above every visual-only member on the sound classes, below the best of them
    # on the appearance and motion classes (Slow-only cannot see the flicker, and the
    # audiovisual classes sound distinct too, so neither says what audio alone lacks).
    audio, visual = of_arch.get("audio"), [a for a in ("slow", "fast", "slowfast") if a in of_arch]
    parts = []
    for g, above in (("sound", True), ("appearance", False), ("motion", False)):
        if audio is None or not visual:
            break
        mine, theirs = group("audio", g), [group(a, g) for a in visual]
        if mine is None or None in theirs:
            continue
        parts.append(Claim(g, g, mine, max(theirs), above=above, label=g, versus="the visual models' best "))
    out.append(composite("audio_only_sound", "Audio-only is strong only on the sound classes (above the visual "
                         "models there, below the best of them on appearance and motion)", parts,
                         about=("audio", *visual)))
    return out


def seeds_report(groups: list[str]) -> Report:
    """The seeds' section of the summary: top-1 and each group's, the claims."""

    return Report("kinetics", claims, [Column("top-1", lambda m: hundred(m["top1"])),
                                       *(Column(g, lambda m, g=g: hundred((m["official"]["groups"].get(g) or {}).get("top1")))
                                         for g in groups)])


def _groups(results: dict[str, dict[str, Any]]) -> list[str]:
    seen = {g for m in results.values() for g in m["official"]["groups"]}
    return [g for g in DEMO_GROUPS if g in seen] + sorted(seen - set(DEMO_GROUPS))


def summary_markdown(results: dict[str, dict[str, Any]], experiments: dict | None) -> str:
    groups = _groups(results)
    first = next(iter(results.values()))
    official = first["official"]
    lines = [
        "# Kinetics: the model family (AVSlowFast Table 5 / A.3, in miniature)",
        "",
        f"Split `{first['split']}`: {official['videos']} manifest videos; {first['missing']} without a prediction "
        f"(failed download or decode), each counted as a miss, as the official rule says. "
        f"Views: {first['views']} at {first['test_crop']} px, softmax averaged per video. Accuracies in %, "
        f"± one binomial standard error.",
        "",
        "| model | top-1 | top-5 | " + " | ".join(groups) + " | params (M) | GFLOPs x views |",
        "| --- | --- | --- | " + " | ".join("---" for _ in groups) + " | --- | --- |",
    ]
    for name, m in results.items():
        o = m["official"]
        cells = [percent(o["groups"][g]["top1"], o["groups"][g]["videos"]) if g in o["groups"] else "-"
                 for g in groups]
        lines.append(f"| {LABELS.get(m['arch'], name)} (`{m['model']}`) | {percent(o['top1'], o['videos'])} | "
                     f"{percent(o['top5'], o['videos'])} | " + " | ".join(cells) +
                     f" | {m['params_m']:.3f} | {m['gflops_per_view']:.3f} x {m['views_per_video']} |")
    available = first["available"]
    lines += ["", f"Over the {available['videos']} videos that have a prediction: " + ", ".join(
        f"{LABELS.get(m['arch'], n)} {percent(m['available']['top1'])}" for n, m in results.items()) + " top-1.",
        "", "## The papers' claims on this run", ""]
    lines += [claim.line for claim in claims(results)]
    lines += experiments_markdown(experiments, groups)
    return "\n".join(lines) + "\n"


def experiments_markdown(experiments: dict[str, Any] | None, groups: list[str]) -> list[str]:
    """The seeds (every member per seed, the claims over them: pipeline.claims) and the
    ablations (AVSlowFast per setting), each as mean (min..max) over the seeds measured."""
    lines = seeds_section(seeds_report(groups), experiments)
    runs = (experiments or {}).get("runs", [])
    ablations = [r for r in runs if r["kind"] == "ablation"]
    if ablations:
        lines += ["", "## Ablations of AVSlowFast (Table 5), as `dvc exp run -S` experiments", "",
                  "| setting | seeds | top-1 | " + " | ".join(groups) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in groups) + " |"]
        settings = list(dict.fromkeys(r["label"] for r in ablations))
        for label in settings:
            ms = [r["results"][r["member"]] for r in ablations if r["label"] == label]
            lines.append(f"| {label} | {len(ms)} | " + " | ".join(spread([c.value(m) for m in ms])
                                                               for c in seeds_report(groups).columns) + " |")
    return lines
