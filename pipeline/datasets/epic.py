"""EPIC-Kitchens (AVSlowFast A.5): what both releases share, and EPIC-Kitchens-100.

    download      every annotated video whole, once (the clip dataset reads any time range)
    labels        EpicSegments: one sample per narration, target verb and noun
    head, task    joint: verb + noun heads, loss 0.5 (CE_verb + CE_noun); separate (the
                  paper's form): a verb model and a noun model, each with its own learning rate
    evaluate      one test view per narration (a centre crop), logits averaged over the views;
                  every narration of the split is scored (one whose video failed is a miss)
    figures       verb top-1 per verb (results/predictions.csv), noun top-1 per noun
                  (per_class.csv) by the cue that tells it apart, every member side by side

EPIC-Kitchens-100 (:class:`EpicKitchens100`) scores as its official evaluation does: verb /
noun / action top-1 and top-5 (action: the top 100 verbs x top 100 nouns of the logits), the
tail classes and the unseen participants; results file ``submission.pkl``. The demo's nouns
are told apart by look or by sound: the summary gives the nouns by cue.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from avsf.data.demo import epic as demo
from avsf.data.epic import EpicSegments, read_epic_annotations, read_epic_classes, read_epic_video_info, read_id_list
from avsf.data.kinetics import ManifestError, Segment
from avsf.io.atomic import write_csv
from pipeline.claims import Claim, Column, Report, by_arch, claims_metrics, with_seeds
from pipeline.datasets.base import Dataset, DownloadPlan, Flavour
from pipeline.figures import Figure, grouped_bars, missing_inputs, model_labels, read_csv
from pipeline.launch import StageFailed
from pipeline.layout import PER_CLASS_NAME, RESULTS_DIR
from pipeline.params import FinetuneDatasetSection
from pipeline.tables import LABELS, markdown_table

log = logging.getLogger("avsf.epic")

KINDS = ("verb", "noun", "action")
TARGETS = ("verb", "noun")
PREDICTIONS = "predictions.csv"  # in results/: every narration, its verb and noun, true and predicted


class EpicSection(FinetuneDatasetSection):
    """An EPIC-Kitchens section: verb and noun from one model with two heads (``heads: joint``,
    loss 0.5 (CE_verb + CE_noun)), or a verb model and a noun model with their own learning
    rates (``separate``, the paper's form)."""

    heads: Literal["joint", "separate"] = "joint"
    verb_base_lr: float | None = Field(None, gt=0)  # separate: the verb model's base_lr (null: train's)
    noun_base_lr: float | None = Field(None, gt=0)  # separate: the noun model's
    verb_iterations: int | None = Field(None, gt=0)  # separate: the verb model's train.iterations (null: train's)
    noun_iterations: int | None = Field(None, gt=0)  # separate: the noun model's
    action_top_k: int = Field(100, gt=0)  # the action scoring: top k verbs x top k nouns


class EpicKitchens(Dataset):
    """What the EPIC-Kitchens releases share: videos stored whole, verb and noun targets, one
    model or two, the logits of each narration's views averaged."""

    Section = EpicSection
    finetunable = True
    pool = "logit_mean"
    per_class_value = "noun top-1 (%)"

    def video_durations(self) -> dict[str, float]:
        """Video id -> duration (s) of every video the annotation files name."""
        raise NotImplementedError

    def download_plan(self) -> DownloadPlan:
        """Every annotated video whole, once, in the split of its file: from 0 to its duration
        rounded up to a whole second (the trim cuts it at the video's real end)."""
        segments: dict[str, Segment] = {}
        for split, durations in self.video_durations().items():
            for video_id, duration in durations.items():
                segments.setdefault(video_id, Segment(video_id, 0.0, float(math.ceil(duration)), split))
        return DownloadPlan(list(segments.values()), total_rows=len(segments))

    def head(self, model, target=None, objective="labels"):
        from avsf.models import HeadConfig

        classes = self.class_names()
        if target is None:
            return HeadConfig(kind="epic", verb_classes=len(classes["verb"]), noun_classes=len(classes["noun"]),
                              dropout=model.dropout, activation="softmax", test_pool=model.test_pool)
        return HeadConfig(kind="classification", num_classes=len(classes[target]), dropout=model.dropout,
                          activation="softmax", test_pool=model.test_pool)

    def task(self, target=None, objective="labels"):
        from avsf.train.tasks import Classification, VerbNoun

        return VerbNoun() if target is None else Classification(key=target)

    def targets(self) -> list[str | None]:
        return list(TARGETS) if self.section.heads == "separate" else [None]

    def target_train(self, train, target):
        if target is None:
            return train
        if getattr(self.section, f"{target}_base_lr") is None:
            log.warning("train: datasets.%s.%s_base_lr is null: the %s model trains at train.base_lr %g (A.5: verb "
                        "0.01, noun 0.0006 at 32, as the epic55-* recipes set)", self.name, target, target, train.base_lr)
        return train.model_copy(update={"base_lr": getattr(self.section, f"{target}_base_lr") or train.base_lr,
                                        "iterations": getattr(self.section, f"{target}_iterations") or train.iterations})

    def record(self) -> dict[str, Any]:
        return {**super().record(), "heads": self.section.heads}

    def test_sampling(self, sampling):
        return sampling

    def predict(self, model, cfg, clips, device, settings) -> dict[str, Any]:
        """Each stored narration's logits (a joint model: verb and noun; a separate one: its
        target), and the narrations' positions in the split's file."""
        from avsf.evaluate.views import predict_views

        result = predict_views(model, cfg, clips, batch_size=settings.batch_size, device=device,
                               workers=settings.workers, progress=True, pool="logit_mean")
        results = result if isinstance(result, dict) else {"logits": result}
        kept = next(iter(results.values())).predicted
        return {"segments": [s.target["segment"] for s, k in zip(clips.samples, kept) if k],
                "logits": {key: r.scores[kept].astype(np.float32) for key, r in results.items()},
                "failures": next(iter(results.values())).failures}

    def narration_logits(self, prediction: dict, narrations: list, classes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(verb logits, noun logits, predicted mask) of every narration of a split, from the
        job's predictions of its model(s) (a narration without a prediction: zero logits)."""
        verb = np.zeros((len(narrations), len(classes["verb"])), np.float32)
        noun = np.zeros((len(narrations), len(classes["noun"])), np.float32)
        predicted = np.zeros(len(narrations), bool)
        for target, p in prediction.items():
            logits = p["logits"] if target is None else {target: p["logits"]["logits"]}
            rows = np.asarray(p["segments"], np.int64)
            if "verb" in logits:
                verb[rows] = logits["verb"]
            if "noun" in logits:
                noun[rows] = logits["noun"]
            predicted[rows] = True
        return verb, noun, predicted

    def figures(self, results, params) -> list[Figure]:
        """Verb top-1 per verb (from results/predictions.csv; a narration without a
        prediction is a miss, as in the official figures) and noun top-1 per noun
        (per_class.csv) of every member, the nouns by the cue that tells them apart
        (predictions.csv's noun_cue; none on real data). Both releases write these files."""
        paths = {m: self.layout.model(self.name, m) / RESULTS_DIR / PREDICTIONS for m in results}
        if missing_inputs(paths.values(), f"{self.title} verb and noun figures"):
            return []
        labels = model_labels(results)
        predictions = {m: read_csv(path) for m, path in paths.items()}
        verbs = [{"model": labels[m], **row} for m, rows in predictions.items() for row in verb_accuracy(rows)]
        title = f"{self.title}: verb top-1 (%) per verb"
        figures = [Figure("verbs", title, grouped_bars(title, verbs, "verb", "top1", "top-1 (%)"))]
        per_class = self.per_class(results)
        if per_class is not None:
            cues = {r["noun"]: r["noun_cue"] for rows in predictions.values() for r in rows if r.get("noun_cue")}
            nouns = [{"model": labels[m], "cue": cues.get(r["class"], "other" if cues else "all nouns"),
                      "noun": r["class"], "top1": r["value"], "segments": r["count"]}
                     for m, rows in per_class.items() for r in rows]
            cue_order = sorted({r["cue"] for r in nouns})
            nouns.sort(key=lambda r: cue_order.index(r["cue"]))
            title = f"{self.title}: noun top-1 (%) per noun, by the cue that tells it apart"
            figures.append(Figure("nouns", title, grouped_bars(title, nouns, "noun", "top1", "top-1 (%)", group="cue")))
        return figures


def noun_cues(nouns: list[str]) -> dict[str, str]:
    """Noun -> the cue that tells it apart, when the nouns are the demo's (else none)."""
    cues = demo.epic_noun_cues()
    return cues if nouns and all(n in cues for n in nouns) else {}


def _epic_counts(plan: list) -> dict[str, Any]:
    return {"segments": dict(Counter(v.split for v in plan for _ in v.segments)),
            "participants": len({v.participant_id for v in plan}),
            "video_seconds": round(sum(v.duration for v in plan), 2)}


EPIC100_FLAVOUR = Flavour(demo.EpicWorldSpec, demo.plan_epic_world, demo.write_epic_video, demo.write_epic_annotations,
                          lambda v: f"{v.video_id}.MP4", _epic_counts)


class EpicKitchens100(EpicKitchens):
    """EPIC-Kitchens-100: EPIC_100_<split>.csv, the verb and noun class files, the video info
    (durations), the tail classes and the unseen participants, as the dataset distributes them."""

    flavour = EPIC100_FLAVOUR
    title = "EPIC-Kitchens-100"
    VERBS, NOUNS, VIDEO_INFO = "EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv", "EPIC_100_video_info.csv"
    TAIL = {"verb": "EPIC_100_tail_verbs.csv", "noun": "EPIC_100_tail_nouns.csv"}

    def annotation(self, split: str, root: Path | None = None) -> Path:
        return (root or self.files) / f"EPIC_100_{split}.csv"

    def unseen(self, split: str, root: Path | None = None) -> Path:
        return (root or self.files) / f"EPIC_100_unseen_participant_ids_{split}.csv"

    def annotation_files(self, root: Path) -> list[Path]:
        splits = dict.fromkeys((self.train_split, self.test_split))
        required = [*(self.annotation(s, root) for s in splits), root / self.VERBS, root / self.NOUNS]
        optional = [root / self.VIDEO_INFO, *(root / n for n in self.TAIL.values()), self.unseen(self.test_split, root)]
        return [*required, *(p for p in optional if p.is_file())]

    def video_durations(self) -> dict[str, dict[str, float]]:
        info_path = self.files / self.VIDEO_INFO
        info = read_epic_video_info(info_path) if info_path.is_file() else {}
        out: dict[str, dict[str, float]] = {}
        for split in dict.fromkeys((self.train_split, self.test_split)):
            try:
                narrations = read_epic_annotations(self.annotation(split))
            except (OSError, ManifestError) as exc:
                raise StageFailed(f"download: {exc}") from None
            durations = out.setdefault(split, {})
            for n in narrations:
                # Without the video info, the last annotated second (+1) bounds the video.
                known = info[n.video_id].duration if n.video_id in info else n.stop_s + 1.0
                durations[n.video_id] = max(durations.get(n.video_id, 0.0), known)
        return out

    def class_names(self) -> dict[str, list[str]]:
        return {"verb": read_epic_classes(self.files / self.VERBS), "noun": read_epic_classes(self.files / self.NOUNS)}

    def label_source(self, split: str):
        return EpicSegments(read_epic_annotations(self.annotation(split)))

    # ------------------------------------------------------------------ evaluation

    def evaluation_truth(self) -> dict[str, Any]:
        split = self.test_split
        try:
            narrations = read_epic_annotations(self.annotation(split))
        except (OSError, ValueError) as exc:
            raise StageFailed(f"evaluate: {exc}") from None
        tail = {k: [int(v) for v in read_id_list(self.files / name)] if (self.files / name).is_file() else []
                for k, name in self.TAIL.items()}
        unseen = read_id_list(self.unseen(split)) if self.unseen(split).is_file() else []
        return {"narrations": narrations, "tail": tail, "unseen": unseen, "classes": self.class_names()}

    def score(self, run, out, truth, out_dir: Path) -> tuple[dict[str, Any], str]:
        from avsf.evaluate.epic import epic_metrics, write_epic_submission

        narrations, classes = truth["narrations"], truth["classes"]
        verb_logits, noun_logits, predicted = self.narration_logits(out["splits"][self.test_split], narrations, classes)
        report = epic_metrics(
            verb_logits, noun_logits, np.array([n.verb_class for n in narrations]),
            np.array([n.noun_class for n in narrations]), [n.participant_id for n in narrations],
            truth["tail"]["verb"], truth["tail"]["noun"], truth["unseen"], predicted=predicted,
            top_k=self.section.action_top_k)
        cues = noun_cues(classes["noun"])
        verb_top, noun_top = verb_logits.argmax(1), noun_logits.argmax(1)
        nouns = np.array([n.noun_class for n in narrations])
        noun_hit = (noun_top == nouns) & predicted
        groups: dict[str, dict[str, float]] = {}
        for cue in dict.fromkeys(cues.values()):
            members = np.array([cues.get(classes["noun"][c]) == cue for c in nouns])
            if members.any():
                groups[cue] = {"noun_top1": round(100 * float(noun_hit[members].mean()), 4),
                               "segments": int(members.sum())}
        failed = sum(len(p["failures"]) for p in out["splits"][self.test_split].values())
        metrics = {
            "model": out["model"], "heads": self.section.heads, "split": self.test_split,
            "narrations": len(narrations), "missing": int((~predicted).sum()),
            "missing_ids": [n.narration_id for n, k in zip(narrations, predicted) if not k],
            # The official figures (every narration; one without a prediction is a miss) at the top
            # level, in %, as the official script prints them; the figures over the predicted ones beside.
            **{f"{k}_top{i}": report["official"][f"{k}_top{i}"] for k in KINDS for i in (1, 5)},
            "tail": report["official"]["tail"], "unseen": report["official"]["unseen"],
            "official": report["official"], "available": report["available"], "noun_groups": groups,
            "views_per_segment": out["views_per_video"], "test_crop": out["test_crop"],
            "gflops_per_view": out["gflops_per_view"],
            "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4), "params_m": out["params_m"],
            "failed_views": failed,
        }
        results = out_dir / RESULTS_DIR
        # Every narration gets a row, as the official script scores only what it is given; one
        # without a prediction has zero logits (our metrics count it as a miss).
        write_epic_submission(results / "submission.pkl", [n.narration_id for n in narrations], verb_logits, noun_logits)
        rows = [{"narration_id": n.narration_id, "participant_id": n.participant_id, "verb": classes["verb"][n.verb_class],
                 "noun": classes["noun"][n.noun_class],
                 "predicted_verb": classes["verb"][v] if k else "(no prediction)",
                 "predicted_noun": classes["noun"][u] if k else "(no prediction)",
                 "noun_cue": cues.get(classes["noun"][n.noun_class], "")}
                for n, v, u, k in zip(narrations, verb_top, noun_top, predicted)]
        write_csv(results / PREDICTIONS, rows, tuple(rows[0]) if rows else ("narration_id",))
        write_csv(out_dir / PER_CLASS_NAME,
                  [{"class": name, "value": round(100 * float(noun_hit[nouns == c].mean()), 2),
                    "count": int((nouns == c).sum())} for c, name in enumerate(classes["noun"]) if (nouns == c).any()],
                  ("class", "value", "count"))
        o = report["official"]
        line = (f"{out['model']} on {len(narrations)} narrations ({int((~predicted).sum())} without a prediction): "
                f"verb {o['verb_top1']}, noun {o['noun_top1']}, action {o['action_top1']} % top-1 "
                f"(tail {o['tail']['verb_top1']} / {o['tail']['noun_top1']} / {o['tail']['action_top1']}; unseen "
                f"{o['unseen']['verb_top1']} / {o['unseen']['noun_top1']} / {o['unseen']['action_top1']})")
        return metrics, line

    # ------------------------------------------------------------------ summary

    def summary(self, results, experiments, params) -> tuple[str, dict[str, Any]]:
        metrics = {name: {**{f"{k}_top1": m[f"{k}_top1"] for k in KINDS}, **{f"{k}_top5": m[f"{k}_top5"] for k in KINDS},
                          **{f"{g}_noun_top1": v["noun_top1"] for g, v in m["noun_groups"].items()}}
                   for name, m in results.items()}
        report = seeds_report(results)
        metrics["claims"] = claims_metrics(report, experiments, params.train.seed, results)
        return with_seeds(summary_markdown(results), report, experiments), metrics


def verb_accuracy(predictions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Top-1 (%) per verb of results/predictions.csv's rows, with the verb's narrations."""
    hits: Counter = Counter()
    seen: Counter = Counter()
    for r in predictions:
        seen[r["verb"]] += 1
        hits[r["verb"]] += r["predicted_verb"] == r["verb"]
    return [{"verb": v, "top1": 100 * hits[v] / n, "segments": n} for v, n in seen.items()]


def pct(value: float | None, n: int | None = None) -> str:
    """A figure already in % (the official script's unit), ± one binomial standard error with ``n``."""
    if value is None:
        return "-"
    if not n:
        return f"{value:.1f}"
    p = value / 100
    return f"{value:.1f} ± {100 * (p * (1 - p) / n) ** 0.5:.1f}"


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    n = first["narrations"]
    cues = list(dict.fromkeys(g for m in results.values() for g in m["noun_groups"]))
    header = ["model", *(f"{k} top-1" for k in KINDS), *(f"{k} top-5" for k in KINDS),
              *(f"tail {k}" for k in KINDS), *(f"unseen {k}" for k in KINDS), *(f"nouns by {c}" for c in cues),
              "GFLOPs x views"]
    rows = []
    for name, m in results.items():
        rows.append([f"{LABELS.get(m['arch'], name)} (`{m['model']}`)",
                     *(pct(m[f"{k}_top1"], n) for k in KINDS), *(pct(m[f"{k}_top5"]) for k in KINDS),
                     *(pct(m["tail"][f"{k}_top1"]) for k in KINDS),
                     *(pct(m["unseen"][f"{k}_top1"]) for k in KINDS),
                     *(pct(m["noun_groups"][c]["noun_top1"], m["noun_groups"][c]["segments"])
                       if c in m["noun_groups"] else "-" for c in cues),
                     f"{m['gflops_per_view']:.3f} x {m['views_per_segment']}"])
    lines = ["# EPIC-Kitchens-100: fine-tuned from Kinetics (AVSlowFast Table 2's shape, in miniature)", "",
             f"Split `{first['split']}`: {n} narrations, {first['missing']} without a prediction (counted as misses). "
             f"Action = (verb, noun), scored from the top 100 verbs x top 100 nouns of the logits as the official "
             f"code does. Heads: {first['heads']}. Top-1 in %, ± one binomial standard error; tail and unseen: "
             f"the dataset's tail-class and unseen-participant subsets "
             f"({first['tail'].get('verb_segments', '-')} / {first['tail'].get('noun_segments', '-')} / "
             f"{first['tail'].get('action_segments', '-')} and {first['unseen'].get('segments', '-')} narrations).",
             "", *markdown_table(header, rows), "", "## The paper's claim on this run", "",
             *(claim.line for claim in claims(results))]
    return "\n".join(lines) + "\n"


def claims(results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The paper's claims on one run's per-member metrics (the first member of each arch)."""
    of_arch = by_arch(results)

    def sound(arch: str) -> float | None:
        group = of_arch.get(arch, {}).get("noun_groups", {}).get("sound")
        return None if group is None else group["noun_top1"]

    av, sf = of_arch.get("avslowfast"), of_arch.get("slowfast")
    pair = ("avslowfast", "slowfast")
    return [Claim("sound_nouns", "AVSlowFast beats SlowFast on the nouns told apart by sound", sound("avslowfast"),
                  sound("slowfast"), "%", about=pair),
            Claim("nouns", "AVSlowFast beats SlowFast on nouns overall (the paper: +4.3 top-1 on EPIC-55)",
                  av and av["noun_top1"], sf and sf["noun_top1"], "%", about=pair)]


def seeds_columns(results: dict[str, dict[str, Any]]) -> list[Column]:
    """The seeds' table of EPIC-100 and EPIC-55: verb, noun and action top-1, the nouns by cue."""
    cues = list(dict.fromkeys(g for m in results.values() for g in m["noun_groups"]))
    return [*(Column(f"{k} top-1", lambda m, k=k: m[f"{k}_top1"]) for k in KINDS),
            *(Column(f"nouns by {c}", lambda m, c=c: m["noun_groups"].get(c, {}).get("noun_top1")) for c in cues)]


def seeds_report(results: dict[str, dict[str, Any]]) -> Report:
    """The seeds' section: :func:`seeds_columns`, the claims."""
    return Report("epic", claims, seeds_columns(results))
