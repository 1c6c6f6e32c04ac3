"""EPIC-Kitchens-55 (AVSlowFast Table 2, A.5): what EPIC-Kitchens shares (pipeline.datasets.epic),
in EPIC-55's own files, splits, scoring and submission.

    annotations   EPIC_train_action_labels.csv, EPIC_test_s{1,2}_timestamps.csv, the verb and noun
                  classes, the three many-shot lists, EPIC_video_info.csv (durations; optional)
    splits        train: the train labels of every participant but ``val_participants``; val: theirs
                  (the paper's split, "the train/val split in [6]": P26-P31 held out, as
                  avsf.data.epic55.VALIDATION_PARTICIPANTS says where it comes from); s1 / s2: the
                  seen and unseen test sets, without labels. The store keeps each video once, in
                  the split of its file (a held-out participant's videos in ``val``), so the
                  log-mel statistics are measured on the training participants alone
    head, task    the A.5 recipe: a verb model and a noun model (``heads: separate``), or one model
                  with both heads (joint), as EPIC-100's
    evaluate      one centre view per segment, logits averaged over views; on val, verb / noun /
                  action top-1 and top-5 and the many-shot precision and recall, every segment
                  scored as epic-kitchens-55-lib does (a segment whose video failed is a miss;
                  avsf.evaluate.epic55); on s1 and s2, the server's submission files
                  results/seen.json and results/unseen.json (every segment; one without a
                  prediction has zero logits) and results/submission.zip holding both
    summary       Table 2's shape: SlowFast vs AVSlowFast on val beside the paper's figures, the
                  claim that audio helps the nouns most checked on this run
    figures       EPIC-Kitchens': verb and noun top-1 per class on val, the nouns by cue

One model answers both: the test sets are predicted by the run trained without the held-out
participants (the paper's submissions came from a model trained on all of train).

The demo (flavour :data:`EPIC55_FLAVOUR`) is an EPIC-100 demo world (the same settings give
the same videos) written in EPIC-55's files (avsf.data.demo.epic55): its train split is the
train labels, its validation split the S1 / S2 test sets. Stage demo@epic55 renders its own
videos, so that download@epic55 depends on its own dataset's files only (as every dataset's
download does: its annotations, never another stage's videos). None of P26-P31 is in the
demo world: its params hold out a participant of its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from avsf.data import epic55 as files
from avsf.data.demo import epic as epic_demo
from avsf.data.demo import epic55 as demo
from avsf.data.epic import EpicNarration, EpicSegments
from avsf.data.kinetics import ManifestError
from avsf.io.atomic import write_csv
from pipeline.claims import Claim, Report, by_arch, claims_metrics, with_seeds
from pipeline.datasets.base import Flavour
from pipeline.datasets.epic import KINDS, EpicKitchens, EpicSection, noun_cues, pct, seeds_columns
from pipeline.launch import StageFailed
from pipeline.layout import PER_CLASS_NAME, RESULTS_DIR
from pipeline.params import ParamsError
from pipeline.tables import LABELS, markdown_table

TRAIN, VAL = "train", "val"
TEST_SETS = tuple(files.TEST_TIMESTAMPS)  # s1 (seen kitchens), s2 (unseen)
PARTICIPANT_ID = re.compile(r"P\d+")
SUBMISSION_ZIP = "submission.zip"

# AVSlowFast Table 2, validation (the train/val split of Baradel et al.), top-1 / top-5 in %:
# SlowFast and AVSlowFast 8x8 R101 fine-tuned from Kinetics-400.
PAPER_VALIDATION = {
    "slowfast": {"verb_top1": 55.8, "verb_top5": 83.1, "noun_top1": 27.4, "noun_top5": 52.1,
                 "action_top1": 21.9, "action_top5": 39.7},
    "avslowfast": {"verb_top1": 58.7, "verb_top5": 83.6, "noun_top1": 31.7, "noun_top5": 58.4,
                   "action_top1": 24.2, "action_top5": 43.6},
}
# ... and AVSlowFast on the test sets (the server's figures): verb / noun / action top-1
PAPER_TEST_TOP1 = {"s1": (65.7, 46.4, 35.9), "s2": (55.8, 32.7, 24.0)}


class Epic55Section(EpicSection):
    """datasets.<d> of EPIC-Kitchens-55: EPIC-Kitchens' keys (the A.5 recipe: separate verb and
    noun models by default), the participants held out for validation; the splits are the files'."""

    train_split: Literal["train"] = TRAIN  # the train labels, the held-out participants left out
    test_split: Literal["val"] = VAL  # the held-out participants' train labels
    heads: Literal["joint", "separate"] = "separate"
    val_participants: tuple[str, ...] = Field(files.VALIDATION_PARTICIPANTS, min_length=1)

    @field_validator("val_participants")
    @classmethod
    def _participant_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = next((p for p in value if not PARTICIPANT_ID.fullmatch(p)), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a participant id (P01, P02, ...)")
        if len(set(value)) != len(value):
            raise ValueError("a participant is listed twice")
        return value


EPIC55_FLAVOUR = Flavour(epic_demo.EpicWorldSpec, epic_demo.plan_epic_world, epic_demo.write_epic_video,
                         demo.write_epic55_annotations,
                         lambda v: f"{v.video_id}.MP4", demo.epic55_counts)


class EpicKitchens55(EpicKitchens):
    """EPIC-Kitchens-55 as the dataset distributes it (avsf.data.epic55), scored as its
    official code and challenge server did (avsf.evaluate.epic55)."""

    Section = Epic55Section
    flavour = EPIC55_FLAVOUR
    title = "EPIC-Kitchens-55"

    # ------------------------------------------------------------------ files

    def annotation_files(self, root: Path) -> list[Path]:
        required = [root / files.TRAIN_LABELS, *(root / name for name in files.TEST_TIMESTAMPS.values()),
                    *(root / name for name in files.CLASS_FILES.values()),
                    *(root / name for name in files.MANY_SHOT_FILES.values())]
        info = root / files.VIDEO_INFO
        return [*required, *([info] if info.is_file() else [])]

    def digest(self) -> dict[str, str]:
        """The files, and who is held out: the train split's segments depend on both."""
        return {**self.files_digest(), "val_participants": ",".join(self.section.val_participants)}

    def read(self, name: str, stage: str) -> list[EpicNarration]:
        try:
            return files.read_epic55_narrations(self.files / name)
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"{stage}: {exc}") from None

    def train_and_val(self, stage: str) -> tuple[list[EpicNarration], list[EpicNarration]]:
        """The train labels apart by ``val_participants``: (train, val); a held-out set that
        leaves either side empty is a params error naming the key."""
        narrations = self.read(files.TRAIN_LABELS, stage)
        train, val = files.split_by_participants(narrations, self.section.val_participants)
        present = sorted({n.participant_id for n in narrations})
        key = f"datasets.{self.name}.val_participants"
        if narrations and not val:
            raise ParamsError(f"{key}: none of {', '.join(self.section.val_participants)} is in "
                              f"{files.TRAIN_LABELS} (participants: {', '.join(present)}): the validation split "
                              f"would be empty")
        if narrations and not train:
            raise ParamsError(f"{key}: holds every participant of {files.TRAIN_LABELS} ({', '.join(present)}): "
                              f"nothing would be left to train on")
        return train, val

    def split_narrations(self, split: str, stage: str) -> list[EpicNarration]:
        """The segments of ``split``: train, val (labelled), s1 or s2 (uids and times only)."""
        if split in TEST_SETS:
            return self.read(files.TEST_TIMESTAMPS[split], stage)
        if split not in (TRAIN, VAL):
            raise StageFailed(f"{stage}: EPIC-Kitchens-55 has no split {split!r}; splits: "
                              f"{', '.join((TRAIN, VAL, *TEST_SETS))}")
        train, val = self.train_and_val(stage)
        return train if split == TRAIN else val

    def video_durations(self) -> dict[str, dict[str, float]]:
        """Every video of the files in the split of its segments (the train labels' videos of
        a held-out participant in val), with its duration from the video info (without it,
        its last segment's end + 1 s)."""
        info_path = self.files / files.VIDEO_INFO
        try:
            info = files.read_epic55_video_info(info_path) if info_path.is_file() else {}
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"download: {exc}") from None
        out: dict[str, dict[str, float]] = {}
        for split in (TRAIN, VAL, *TEST_SETS):
            durations = out.setdefault(split, {})
            for n in self.split_narrations(split, "download"):
                known = info[n.video_id].duration if n.video_id in info else n.stop_s + 1.0
                durations[n.video_id] = max(durations.get(n.video_id, 0.0), known)
        return out

    def class_names(self) -> dict[str, list[str]]:
        return {kind: files.read_epic55_classes(self.files / name, kind) for kind, name in files.CLASS_FILES.items()}

    def label_source(self, split: str):
        return EpicSegments(self.split_narrations(split, "train"))

    def record(self) -> dict[str, Any]:
        return {**super().record(), "val_participants": list(self.section.val_participants)}

    # ------------------------------------------------------------------ evaluation

    def evaluation_splits(self) -> list[str]:
        return [self.test_split, *TEST_SETS]

    def evaluation_truth(self) -> dict[str, Any]:
        stage = "evaluate"
        try:
            many_shot = {kind: files.read_many_shot_classes(self.files / files.MANY_SHOT_FILES[kind], kind)
                         for kind in ("verb", "noun")}
            many_shot["action"] = files.read_many_shot_actions(self.files / files.MANY_SHOT_FILES["action"])
            classes = self.class_names()
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"{stage}: {exc}") from None
        return {"splits": {split: self.split_narrations(split, stage) for split in self.evaluation_splits()},
                "classes": classes, "many_shot": many_shot}

    def score(self, run, out, truth, out_dir: Path) -> tuple[dict[str, Any], str]:
        from avsf.evaluate.epic55 import SUBMISSION_FILES, epic55_metrics, write_epic55_submission, zip_submission

        classes, many_shot = truth["classes"], truth["many_shot"]
        narrations = truth["splits"][self.test_split]
        verb_logits, noun_logits, predicted = self.narration_logits(out["splits"][self.test_split], narrations, classes)
        verbs = np.array([n.verb_class for n in narrations], np.int64)
        nouns = np.array([n.noun_class for n in narrations], np.int64)
        report = epic55_metrics(verb_logits, noun_logits, verbs, nouns, many_shot["verb"], many_shot["noun"],
                                many_shot["action"], predicted=predicted, top_k=self.section.action_top_k)
        official = report["official"]
        cues = noun_cues(classes["noun"])
        verb_top, noun_top = verb_logits.argmax(1), noun_logits.argmax(1)
        noun_hit = (noun_top == nouns) & predicted
        groups: dict[str, dict[str, float]] = {}
        for cue in dict.fromkeys(cues.values()):
            members = np.array([cues.get(classes["noun"][c]) == cue for c in nouns], bool)
            if members.any():
                groups[cue] = {"noun_top1": round(100 * float(noun_hit[members].mean()), 4),
                               "segments": int(members.sum())}

        results = out_dir / RESULTS_DIR
        test_sets: dict[str, dict[str, Any]] = {}
        for test in TEST_SETS:
            segments = truth["splits"][test]
            verb, noun, done = self.narration_logits(out["splits"][test], segments, classes)
            # JSON carries no NaN: a row a diverged model left non-finite is sent as no prediction (zeros), counted.
            finite = np.isfinite(verb).all(axis=1) & np.isfinite(noun).all(axis=1)
            verb[~finite], noun[~finite] = 0.0, 0.0
            write_epic55_submission(results / SUBMISSION_FILES[test], [n.narration_id for n in segments], verb, noun,
                                    self.section.action_top_k)
            test_sets[test] = {"file": SUBMISSION_FILES[test], "segments": len(segments),
                               "participants": len({n.participant_id for n in segments}),
                               "missing": int((~done).sum()), "non_finite": int((done & ~finite).sum()),
                               "failed_views": sum(len(p["failures"]) for p in out["splits"][test].values())}
        zip_submission(results / SUBMISSION_ZIP, [results / SUBMISSION_FILES[t] for t in TEST_SETS])

        precision = {k: v for k, v in official["precision"].items() if k in KINDS}
        recall = {k: v for k, v in official["recall"].items() if k in KINDS}
        metrics = {
            "model": out["model"], "heads": self.section.heads, "split": self.test_split,
            "val_participants": list(self.section.val_participants),
            "segments": len(narrations), "missing": report["missing"],
            "missing_ids": [narrations[i].narration_id for i in report["missing_rows"]],
            # The official figures (every segment; one without a prediction is a miss) at the top
            # level, in %; the figures over the predicted ones beside.
            **{f"{k}_top{i}": official[f"{k}_top{i}"] for k in KINDS for i in (1, 5)},
            "many_shot": {"precision": precision, "recall": recall, "classes": official["many_shot_classes"]},
            "official": official, "available": report["available"], "noun_groups": groups, "test_sets": test_sets,
            "views_per_segment": out["views_per_video"], "test_crop": out["test_crop"],
            "gflops_per_view": out["gflops_per_view"],
            "gflops_x_views": round(out["gflops_per_view"] * out["views_per_video"], 4), "params_m": out["params_m"],
            "failed_views": sum(len(p["failures"]) for p in out["splits"][self.test_split].values()),
        }
        rows = [{"uid": n.narration_id, "participant_id": n.participant_id, "verb": classes["verb"][n.verb_class],
                 "noun": classes["noun"][n.noun_class],
                 "predicted_verb": classes["verb"][v] if k else "(no prediction)",
                 "predicted_noun": classes["noun"][u] if k else "(no prediction)",
                 "noun_cue": cues.get(classes["noun"][n.noun_class], "")}
                for n, v, u, k in zip(narrations, verb_top, noun_top, predicted)]
        write_csv(results / "predictions.csv", rows, tuple(rows[0]) if rows else ("uid",))
        write_csv(out_dir / PER_CLASS_NAME,
                  [{"class": name, "value": round(100 * float(noun_hit[nouns == c].mean()), 2),
                    "count": int((nouns == c).sum())} for c, name in enumerate(classes["noun"]) if (nouns == c).any()],
                  ("class", "value", "count"))
        line = (f"{out['model']} on {len(narrations)} val segments ({report['missing']} without a prediction): "
                f"verb {_fmt(official['verb_top1'])}, noun {_fmt(official['noun_top1'])}, action "
                f"{_fmt(official['action_top1'])} % top-1; "
                + ", ".join(f"{test_sets[t]['file']} {test_sets[t]['segments']} segments "
                            f"({test_sets[t]['missing']} without a prediction)" for t in TEST_SETS))
        return metrics, line

    # ------------------------------------------------------------------ summary

    def summary(self, results, experiments, params) -> tuple[str, dict[str, Any]]:
        metrics = {name: {**{f"{k}_top{i}": m[f"{k}_top{i}"] for k in KINDS for i in (1, 5)},
                          **{f"many_shot_{k}_{what}": m["many_shot"][what][k] for k in KINDS
                             for what in ("precision", "recall")},
                          **{f"{g}_noun_top1": v["noun_top1"] for g, v in m["noun_groups"].items()}}
                   for name, m in results.items()}
        report = seeds_report(results)
        metrics["claims"] = claims_metrics(report, experiments, params.train.seed, results)
        return with_seeds(summary_markdown(results), report, experiments), metrics


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def gains(av: dict[str, Any] | None, sf: dict[str, Any] | None) -> dict[str, float | None]:
    """AVSlowFast's top-1 and top-5 minus SlowFast's, per kind (None where one is missing)."""
    out: dict[str, float | None] = {}
    for key in (f"{k}_top{i}" for k in KINDS for i in (1, 5)):
        a, s = (av or {}).get(key), (sf or {}).get(key)
        out[key] = None if a is None or s is None else a - s
    return out


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    n = first["segments"]
    cues = list(dict.fromkeys(g for m in results.values() for g in m["noun_groups"]))
    figures = [f"{k}_top{i}" for k in KINDS for i in (1, 5)]
    header = ["model", *(f"{k} top-{i}" for k in KINDS for i in (1, 5)),
              *(f"many-shot {k} P / R" for k in KINDS), *(f"nouns by {c}" for c in cues), "GFLOPs x views"]
    blank = ["-"] * (len(KINDS) + len(cues) + 1)

    def many_shot(m: dict[str, Any], kind: str) -> str:
        return f"{_fmt(m['many_shot']['precision'][kind])} / {_fmt(m['many_shot']['recall'][kind])}"

    rows = [[f"{LABELS.get(m['arch'], name)} (`{m['model']}`)",
             *(pct(m[f], n if f.endswith("top1") else None) for f in figures),
             *(many_shot(m, k) for k in KINDS),
             *(pct(m["noun_groups"][c]["noun_top1"], m["noun_groups"][c]["segments"]) if c in m["noun_groups"] else "-"
               for c in cues),
             f"{m['gflops_per_view']:.3f} x {m['views_per_segment']}"]
            for name, m in results.items()]
    of_arch = by_arch(results)
    av, sf = of_arch.get("avslowfast"), of_arch.get("slowfast")
    ours = gains(av, sf)
    if av and sf:
        rows.append(["Δ AVSlowFast − SlowFast", *(_signed(ours[f]) for f in figures), *blank])
    theirs = gains(PAPER_VALIDATION["avslowfast"], PAPER_VALIDATION["slowfast"])
    for arch, paper in PAPER_VALIDATION.items():
        rows.append([f"[{LABELS[arch]} 8x8 R101, the paper]", *(_fmt(paper[f]) for f in figures), *blank])
    rows.append(["[Δ, the paper]", *(_signed(theirs[f]) for f in figures), *blank])

    tests = first["test_sets"]
    test_line = "; ".join(
        f"{test.upper()} ({'seen' if test == 's1' else 'unseen'} kitchens): {t['segments']} segments of "
        f"{t['participants']} participant{'s' if t['participants'] != 1 else ''}, {t['missing']} without a prediction, in `results/{t['file']}` "
        f"[the paper's AVSlowFast: {' / '.join(map(str, PAPER_TEST_TOP1[test]))}]" for test, t in tests.items())
    lines = [
        "# EPIC-Kitchens-55: fine-tuned from Kinetics (AVSlowFast Table 2's shape, in miniature)", "",
        f"Validation: the train labels of participants {', '.join(first['val_participants'])} ({n} segments, "
        f"{first['missing']} without a prediction, counted as misses), the models trained on the other participants' "
        f"(heads: {first['heads']}). Action = (verb, noun), scored from the top 100 verbs x top 100 nouns of the "
        f"logits as epic-kitchens-55-lib does. Top-1 and top-5 in %, top-1 ± one binomial standard error; many-shot "
        f"P / R: precision and recall averaged over the many-shot classes present "
        f"({' / '.join(str(first['many_shot']['classes'][k]) for k in KINDS)} verbs / nouns / actions). "
        f"The paper's rows (in brackets) are its validation figures on the real dataset.", "",
        *markdown_table(header, rows), "",
        f"Test sets, scored by the challenge server (verb / noun / action top-1): {test_line}; "
        f"all in `results/{SUBMISSION_ZIP}`.", "",
        "## The paper's claims on this run", "",
        *(claim.line for claim in claims(results)),
    ]
    return "\n".join(lines) + "\n"


def claims(results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The paper's claims on one run's per-member metrics (the first member of each arch)."""
    of_arch = by_arch(results)
    av, sf = of_arch.get("avslowfast"), of_arch.get("slowfast")
    ours, theirs = gains(av, sf), gains(PAPER_VALIDATION["avslowfast"], PAPER_VALIDATION["slowfast"])
    others = [ours["verb_top1"], ours["action_top1"]]
    pair = ("avslowfast", "slowfast")

    def sound(m: dict[str, Any] | None) -> float | None:
        group = (m or {}).get("noun_groups", {}).get("sound")
        return None if group is None else group["noun_top1"]

    return [
        Claim("nouns_gain_most",
              f"Audio helps the nouns most: AVSlowFast's noun top-1 gain over SlowFast beats its verb and action gains "
              f"(the paper: {theirs['noun_top1']:+.1f} vs {theirs['verb_top1']:+.1f} / {theirs['action_top1']:+.1f})",
              ours["noun_top1"], None if None in others else max(others), "%", about=pair),
        *(Claim(kind, f"AVSlowFast beats SlowFast in {kind} top-1 (the paper: "
                      f"{PAPER_VALIDATION['slowfast'][f'{kind}_top1']} -> {PAPER_VALIDATION['avslowfast'][f'{kind}_top1']})",
                av and av[f"{kind}_top1"], sf and sf[f"{kind}_top1"], "%", about=pair) for kind in KINDS),
        Claim("sound_nouns", "AVSlowFast beats SlowFast on the nouns told apart by sound", sound(av), sound(sf), "%",
              about=pair),
    ]


def seeds_report(results: dict[str, dict[str, Any]]) -> Report:
    """The seeds' section: EPIC-100's columns (verb, noun, action, nouns by cue), the claims."""
    return Report("epic55", claims, seeds_columns(results))
