"""The summaries' figures: Vega-Lite specs made from the same metrics files the tables read,
rendered to SVG without a browser (pipeline.vega) into ``<summary dir>/figures/`` and
embedded in ``summary.md``.

    kinetics_figures   training curves of the family; top-1 per class of every member by cue;
                       AVSlowFast's per-class gain over SlowFast (AVSlowFast Fig. 3); its confusion
    epic_figures       verb and noun top-1 per class, nouns by cue
    charades_figures   AP per class
    ava_figures        AP per class, most frequent first (SlowFast Fig. 3), kinds of action coloured
    ssl_figures        probe top-1 per backbone and split

Each ``*_figures`` takes what its summary already read (the members' metrics, with ``arch``)
and the folders of the files beside them, and returns ``Figure``s; ``write_figures`` renders
them and gives the markdown that embeds them. A figure whose inputs are missing (no SlowFast
member to compare with, no curves) is left out, not drawn empty.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pipeline.summary import LABELS
from pipeline.vega import schema_url, svg

FIGURES_DIR = "figures"
NO_PREDICTION = "(no prediction)"  # pipeline.evaluate's cell for a video without a prediction
# Past this many classes (real Kinetics has 400) the gains show the largest and smallest half
# each, and the confusion matrix the true classes with the most misclassified videos.
GAIN_CLASSES = CONFUSION_CLASSES = 40
OTHER_CLASSES = "(other classes)"
BAR = 12  # px per bar


@dataclass(frozen=True)
class Figure:
    name: str  # the file's stem under figures/
    title: str  # the caption (and alt text) in summary.md
    spec: dict[str, Any]  # Vega-Lite, data inline

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.spec["data"]["values"]


def _spec(title: str, rows: list[dict[str, Any]], **rest: Any) -> dict[str, Any]:
    return {"$schema": schema_url(), "title": title, "data": {"values": rows}, **rest}


def model_labels(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Member -> its name as the papers give it (the member's name too where two share an arch)."""
    archs = Counter(m["arch"] for m in results.values())
    return {name: LABELS.get(m["arch"], name) + (f" ({name})" if archs[m["arch"]] > 1 else "")
            for name, m in results.items()}


def first_of_arch(results: dict[str, dict[str, Any]], arch: str) -> str | None:
    """The first member of ``arch`` (it stands for the arch, as in the summaries' claims)."""
    return next((name for name, m in results.items() if m["arch"] == arch), None)


def read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _number(cell: str | float | None) -> float | None:
    """A figure, or None (no bar, no point) for an empty cell or a non-finite value, which a
    Vega-Lite spec (JSON) cannot hold."""
    if cell is None or cell in ("", "None"):
        return None
    value = float(cell)
    return value if math.isfinite(value) else None


def _grouped_bars(title: str, rows: list[dict[str, Any]], category: str, value: str, value_title: str,
                  group: str | None = None, color: str = "model", opacity: str | None = None,
                  order: list[str] | None = None, fmt: str = "") -> dict[str, Any]:
    """Horizontal bars: one per (category, model), side by side; in one panel per ``group``;
    ``fmt`` the value axis's d3 format ('.0%' for a fraction shown in %)."""
    encoding: dict[str, Any] = {
        "y": {"field": category, "type": "nominal", "title": None, "sort": order or None},
        "yOffset": {"field": "model", "sort": None},
        "x": {"field": value, "type": "quantitative", "title": value_title, "axis": {"format": fmt} if fmt else {}},
        "color": {"field": color, "type": "nominal", "sort": None},
        "tooltip": [{"field": k} for k in rows[0]] if rows else [],
    }
    if opacity:
        models = list(dict.fromkeys(r[opacity] for r in rows))
        fainter = [0.55 * (len(models) - 1 - i) / max(1, len(models) - 1) for i in range(len(models))]
        encoding["opacity"] = {"field": opacity, "type": "nominal", "sort": None,
                               "scale": {"domain": models, "range": [1 - f for f in fainter]}}
    # With an offset channel the step is each bar's, not each category's.
    inner = {"mark": "bar", "encoding": encoding, "width": 360, "height": {"step": BAR}}
    if group is None:
        return _spec(title, rows, **inner)
    return _spec(title, rows, facet={"row": {"field": group, "type": "nominal", "title": None, "sort": None,
                                             "header": {"labelAngle": 0, "labelAlign": "left"}}},
                 spec=inner, resolve={"scale": {"y": "independent"}})


# ---------------------------------------------------------------------------------------- Kinetics
def class_cues(classes: Iterable[str]) -> dict[str, str]:
    """Class -> its group as the evaluation reports it (the demo's cues; Kinetics-Sounds on
    real data), "all classes" for every class when none has a group."""
    from pipeline.evaluate import class_groups

    classes = list(classes)
    groups = class_groups(classes)
    return {c: groups[c] for c in classes if c in groups} if groups else {c: "all classes" for c in classes}


def by_cue(classes: Iterable[str], cues: dict[str, str]) -> list[str]:
    """``classes`` cue by cue (in the order the cues first appear), by name within a cue; a
    class without a cue last."""
    order = list(dict.fromkeys(cues.values()))
    return sorted(classes, key=lambda c: (order.index(cues[c]) if c in cues else len(order), c))


def family_curves(live_dirs: dict[str, Path], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every member's per-epoch loss and top-1, training and validation (DVCLive's
    <live_dir>/plots/metrics/epochs/{loss,val_loss,top1,val_top1}.tsv)."""
    rows = []
    for name, live_dir in live_dirs.items():
        for metric, what in (("loss", "loss"), ("top1", "top-1")):
            for split, prefix in (("training", ""), ("validation", "val_")):
                path = Path(live_dir) / "plots" / "metrics" / "epochs" / f"{prefix}{metric}.tsv"
                if path.is_file():
                    rows += [{"model": labels[name], "metric": what, "split": split, "epoch": int(r["step"]),
                              "value": _number(r[f"{prefix}{metric}"])} for r in read_csv(path, "\t")]
    return rows


def curves_figure(rows: list[dict[str, Any]]) -> Figure:
    line = {"mark": "line",
            "encoding": {"x": {"field": "epoch", "type": "quantitative"},
                         "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False}},
                         "color": {"field": "model", "type": "nominal", "sort": None},
                         "strokeDash": {"field": "split", "type": "nominal", "sort": None},
                         "tooltip": [{"field": k} for k in ("model", "split", "epoch", "value")]},
            "width": 300, "height": 220}
    title = "Kinetics: training and validation curves of the family"
    return Figure("curves", title, _spec(title, rows, facet={"column": {"field": "metric", "type": "nominal",
                                                                         "title": None, "sort": ["loss", "top-1"]}},
                                         spec=line, resolve={"scale": {"y": "independent"}}))


def per_class_figure(results: dict[str, dict[str, Any]], labels: dict[str, str]) -> Figure:
    """Top-1 per class (the official figures: every manifest video) of every member, by cue;
    on real Kinetics the classes that have a group (Kinetics-Sounds)."""
    classes = list(dict.fromkeys(c for m in results.values() for c in m["official"]["per_class"]))
    cues = class_cues(classes)
    rows = [{"cue": cues[c], "class": c, "model": labels[name], "top1": _number(m["official"]["per_class"][c]["top1"]),
             "videos": m["official"]["per_class"][c]["videos"]}
            for c in by_cue(cues, cues) for name, m in results.items() if c in m["official"]["per_class"]]
    title = "Kinetics: top-1 per class of every member, by cue"
    return Figure("per_class", title, _grouped_bars(title, rows, "class", "top1", "top-1", group="cue", fmt=".0%"))


def gain_figure(results: dict[str, dict[str, Any]], better: str, base: str) -> Figure:
    """``better``'s per-class top-1 minus ``base``'s, largest gain first (AVSlowFast Fig. 3)."""
    mine, theirs = results[better]["official"]["per_class"], results[base]["official"]["per_class"]
    cues = class_cues(mine)
    rows = sorted(({"class": c, "cue": cues.get(c, "other"), "gain": mine[c]["top1"] - theirs[c]["top1"],
                    "top1": mine[c]["top1"], "base_top1": theirs[c]["top1"]} for c in mine if c in theirs),
                  key=lambda r: (-r["gain"], r["class"]))
    shown = rows if len(rows) <= GAIN_CLASSES else rows[:GAIN_CLASSES // 2] + rows[-GAIN_CLASSES // 2:]
    a, b = LABELS.get(results[better]["arch"], better), LABELS.get(results[base]["arch"], base)
    title = f"Kinetics: {a}'s top-1 gain over {b} per class" + (
        f" (the {GAIN_CLASSES // 2} largest and smallest of {len(rows)})" if len(shown) < len(rows) else "")
    spec = _spec(title, shown, mark="bar", width=360, height={"step": BAR + 6}, encoding={
        "y": {"field": "class", "type": "nominal", "title": None, "sort": [r["class"] for r in shown]},
        "x": {"field": "gain", "type": "quantitative", "title": f"top-1 gain over {b}", "axis": {"format": "+.0%"}},
        "color": {"field": "cue", "type": "nominal", "sort": None},
        "tooltip": [{"field": k} for k in ("class", "cue", "gain", "top1", "base_top1")]})
    return Figure("gain", title, spec)


def confusion_figure(path: Path, model: str, class_order: list[str]) -> Figure:
    """Videos per (true class, predicted class) from evaluate's confusion.csv, classes in
    ``class_order`` (a video without a prediction in its own column, last). Past
    CONFUSION_CLASSES classes, the true classes with the most misclassified videos, the
    predictions of any other class in one column."""
    pairs = [(r["actual"], r["predicted"]) for r in read_csv(path)]
    order = class_order + sorted({c for pair in pairs for c in pair} - set(class_order) - {NO_PREDICTION})
    title = f"Kinetics: confusion of {model} (videos)"
    if len(order) > CONFUSION_CLASSES:
        errors = Counter(a for a, p in pairs if a != p)
        kept = set(sorted(order, key=lambda c: -errors[c])[:CONFUSION_CLASSES])
        order = [c for c in order if c in kept]
        pairs = [(a, p if p in kept or p == NO_PREDICTION else OTHER_CLASSES) for a, p in pairs if a in kept]
        title += f", the {CONFUSION_CLASSES} classes most often missed"
    counts = Counter(pairs)
    predicted = order + [c for c in (OTHER_CLASSES, NO_PREDICTION) if any(p == c for _, p in counts)]
    rows = [{"actual": a, "predicted": p, "videos": n} for (a, p), n in sorted(counts.items())]
    cell = {"x": {"field": "predicted", "type": "nominal", "sort": predicted, "title": "predicted"},
            "y": {"field": "actual", "type": "nominal", "sort": order, "title": "true class"}}
    spec = _spec(title, rows, width={"step": 28}, height={"step": 28}, layer=[
        {"mark": "rect", "encoding": {**cell, "color": {"field": "videos", "type": "quantitative",
                                                          "scale": {"scheme": "blues"}},
                                      "tooltip": [{"field": k} for k in ("actual", "predicted", "videos")]}},
        {"mark": {"type": "text", "fontSize": 9}, "encoding": {**cell, "text": {"field": "videos"}}},
    ])
    return Figure("confusion", title, spec)


def kinetics_figures(results: dict[str, dict[str, Any]], evaluate_dirs: dict[str, Path],
                     live_dirs: dict[str, Path]) -> list[Figure]:
    """The family's figures from evaluate's metrics.json and confusion.csv (``evaluate_dirs``)
    and DVCLive's curves (``live_dirs``), each by member."""
    labels = model_labels(results)
    figures = []
    curves = family_curves(live_dirs, labels)
    if curves:
        figures.append(curves_figure(curves))
    figures.append(per_class_figure(results, labels))
    av, sf = first_of_arch(results, "avslowfast"), first_of_arch(results, "slowfast")
    if av and sf:
        figures.append(gain_figure(results, av, sf))
    if av and av in evaluate_dirs and (Path(evaluate_dirs[av]) / "confusion.csv").is_file():
        per_class = results[av]["official"]["per_class"]
        figures.append(confusion_figure(Path(evaluate_dirs[av]) / "confusion.csv", labels[av],
                                        by_cue(per_class, class_cues(per_class))))
    return figures


# ---------------------------------------------------------------------------------------- EPIC
def epic_verb_accuracy(predictions: Path) -> list[dict[str, Any]]:
    """Top-1 (%) per verb from evaluate_epic's predictions.csv (a narration without a
    prediction is a miss, as in the official figures)."""
    hits: Counter = Counter()
    seen: Counter = Counter()
    for r in read_csv(predictions):
        seen[r["verb"]] += 1
        hits[r["verb"]] += r["predicted_verb"] == r["verb"]
    return [{"verb": v, "top1": 100 * hits[v] / n, "segments": n} for v, n in seen.items()]


def epic_noun_cues(predictions: Path) -> dict[str, str]:
    """Noun -> the cue that tells it apart (predictions.csv's noun_cue; none on real data)."""
    return {r["noun"]: r["noun_cue"] for r in read_csv(predictions) if r.get("noun_cue")}


def epic_figures(results: dict[str, dict[str, Any]], evaluate_dirs: dict[str, Path]) -> list[Figure]:
    """Verb top-1 per verb (predictions.csv) and noun top-1 per noun (noun_accuracy.csv, the
    DVC plot evaluate_epic writes), by member; nouns by the cue that tells them apart."""
    labels = model_labels(results)
    verbs, nouns = [], []
    for name in results:
        folder = Path(evaluate_dirs[name])
        verbs += [{"model": labels[name], **r} for r in epic_verb_accuracy(folder / "predictions.csv")]
        cues = epic_noun_cues(folder / "predictions.csv")
        nouns += [{"model": labels[name], "cue": cues.get(r["noun"], "all nouns" if not cues else "other"),
                   "noun": r["noun"], "top1": _number(r["top1"]), "segments": int(r["segments"])}
                  for r in read_csv(folder / "noun_accuracy.csv")]
    cue_order = list(dict.fromkeys(r["cue"] for r in sorted(nouns, key=lambda r: r["cue"])))
    nouns.sort(key=lambda r: cue_order.index(r["cue"]))
    verb_title = "EPIC-Kitchens: verb top-1 (%) per verb"
    noun_title = "EPIC-Kitchens: noun top-1 (%) per noun, by the cue that tells it apart"
    return [Figure("verbs", verb_title, _grouped_bars(verb_title, verbs, "verb", "top1", "top-1 (%)")),
            Figure("nouns", noun_title, _grouped_bars(noun_title, nouns, "noun", "top1", "top-1 (%)", group="cue"))]


# ---------------------------------------------------------------------------------------- Charades
def charades_figures(results: dict[str, dict[str, Any]], evaluate_dirs: dict[str, Path]) -> list[Figure]:
    """AP per class of every member (evaluate_charades' class_ap.csv)."""
    labels = model_labels(results)
    rows = [{"model": labels[name], "class": r["class"], "ap": _number(r["ap"]), "positives": int(r["positives"])}
            for name in results for r in read_csv(Path(evaluate_dirs[name]) / "class_ap.csv")]
    title = "Charades: AP per class"
    return [Figure("class_ap", title, _grouped_bars(title, rows, "class", "ap", "AP", fmt=".0%"))]


# ---------------------------------------------------------------------------------------- AVA
def ava_action_kinds(classes: Iterable[str]) -> dict[str, str]:
    """Action -> its kind as evaluate_ava groups it (the demo's kinds; "other" elsewhere)."""
    from avsf.data.demo.ava import ava_cue_groups

    kinds = ava_cue_groups()
    return {c: kinds.get(c, "other") for c in classes}


def ava_figures(results: dict[str, dict[str, Any]]) -> list[Figure]:
    """AP per class of every member (metrics.json's class_ap, as the summary's table), the
    most frequent class first (SlowFast Fig. 3), coloured by kind of action."""
    labels = model_labels(results)
    counts = next(iter(results.values()))["class_count"]
    order = sorted(counts, key=lambda c: (-counts[c], c))
    kinds = ava_action_kinds(order)
    rows = [{"model": labels[name], "class": c, "boxes": counts[c], "kind": kinds[c],
             "ap": _number(m["class_ap"].get(c))}
            for c in order for name, m in results.items()]
    title = "AVA: AP per class, most frequent first, by kind of action"
    return [Figure("class_ap", title, _grouped_bars(title, rows, "class", "ap", "AP", color="kind", opacity="model",
                                                    order=order, fmt=".0%"))]


# ---------------------------------------------------------------------------------------- SSL
def ssl_figures(results: dict[str, dict[str, Any]], dataset_labels: dict[str, str]) -> list[Figure]:
    """Probe top-1 of every backbone on each split of each transfer dataset (its
    reports/ssl/probe/<backbone>.json), the mean over the splits as a tick."""
    rows = [{"backbone": backbone, "dataset": dataset_labels.get(d, d), "split": f"split {k}",
             "top1": _number(s["top1"]), "mean_top1": _number(r["mean_top1"])}
            for backbone, report in results.items() for d, r in report["datasets"].items()
            for k, s in r["splits"].items()]
    x = {"field": "backbone", "type": "nominal", "sort": None, "title": None, "axis": {"labelAngle": -30}}
    layer = [{"mark": "bar", "encoding": {"x": x, "xOffset": {"field": "split", "sort": None},
                                          "y": {"field": "top1", "type": "quantitative", "title": "top-1",
                                                "axis": {"format": ".0%"}},
                                          "color": {"field": "split", "type": "nominal", "sort": None},
                                          "tooltip": [{"field": k} for k in ("backbone", "split", "top1")]}},
             {"mark": {"type": "tick", "color": "black", "thickness": 2},
              "encoding": {"x": x, "y": {"field": "mean_top1", "type": "quantitative", "aggregate": "mean"}}}]
    title = "Self-supervised backbones: probe top-1 per split (tick: the mean over the splits)"
    return [Figure("probe", title, _spec(title, rows, facet={"column": {"field": "dataset", "type": "nominal",
                                                                         "title": None, "sort": None}},
                                         spec={"layer": layer, "width": {"step": BAR + 4}, "height": 220}))]


# ---------------------------------------------------------------------------------------- writing
def write_figures(out_dir: str | os.PathLike, figures: list[Figure]) -> str:
    """Render ``figures`` to <out_dir>/figures/<name>.svg, replacing the folder whole (no
    figure of an earlier run stays), and return the markdown section that embeds them."""
    final = Path(out_dir) / FIGURES_DIR
    tmp = final.with_name(f".{FIGURES_DIR}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for figure in figures:
            (tmp / f"{figure.name}.svg").write_text(svg(figure.spec), encoding="utf8")
        old = final.with_name(f".{FIGURES_DIR}.old-{os.getpid()}")
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not figures:
        return ""
    return "\n".join(["", "## Figures", "", *(f"![{f.title}]({FIGURES_DIR}/{f.name}.svg)\n" for f in figures)])
