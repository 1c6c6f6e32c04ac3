"""The summaries' figures: Vega-Lite specs made from the files the summaries' tables read and
those the evaluation writes beside them, rendered to SVG without a browser (pipeline.vega)
into ``<layout.reports>/<report>/figures/`` and embedded in ``summary.md``.

What every report's figures share is here: the figure, bars by class and model, training
curves, one member's per-class gain over another's, a confusion matrix, and the writing.
Each dataset composes its own in ``Dataset.figures`` (pipeline/datasets/<d>.py), the
self-supervised backbones' in pipeline/ssl_summary.py. A figure whose input files are
missing is left out, with a warning naming them, not drawn empty.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pipeline.layout import REPORTS
from pipeline.tables import LABELS
from pipeline.vega import schema_url, svg

log = logging.getLogger("avsf.figures")

FIGURES_DIR = REPORTS["figures"]
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


def figure_spec(title: str, rows: list[dict[str, Any]], **rest: Any) -> dict[str, Any]:
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


def number(cell: str | float | None) -> float | None:
    """A figure, or None (no bar, no point) for an empty cell or a non-finite value, which a
    Vega-Lite spec (JSON) cannot hold."""
    if cell is None or cell in ("", "None"):
        return None
    value = float(cell)
    return value if math.isfinite(value) else None


def missing_inputs(paths: Iterable[Path], figures: str) -> bool:
    """Whether any input file of ``figures`` (e.g. "Kinetics' curves") is missing, each one
    logged: they are left out."""
    missing = [Path(p) for p in paths if not Path(p).exists()]
    for path in missing:
        log.warning("figures: %s left out: %s is missing", figures, path)
    return bool(missing)


def grouped_bars(title: str, rows: list[dict[str, Any]], category: str, value: str, value_title: str,
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
        return figure_spec(title, rows, **inner)
    facet = {"row": {"field": group, "type": "nominal", "title": None, "sort": None,
                     "header": {"labelAngle": 0, "labelAlign": "left"}}}
    return figure_spec(title, rows, facet=facet, spec=inner, resolve={"scale": {"y": "independent"}})


def by_cue(classes: Iterable[str], cues: dict[str, str]) -> list[str]:
    """``classes`` cue by cue (in the order the cues first appear), by name within a cue; a
    class without a cue last."""
    order = list(dict.fromkeys(cues.values()))
    return sorted(classes, key=lambda c: (order.index(cues[c]) if c in cues else len(order), c))


def family_curves(live_dirs: dict[str, Path], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every member's per-epoch loss and top-1, training and validation, from DVCLive's
    <live_dir>/plots/metrics/epochs/{loss,val_loss,top1,val_top1}.tsv (those there are)."""
    rows = []
    for name, live_dir in live_dirs.items():
        for metric, what in (("loss", "loss"), ("top1", "top-1")):
            for split, prefix in (("training", ""), ("validation", "val_")):
                path = Path(live_dir) / REPORTS["epochs"] / f"{prefix}{metric}.tsv"
                if path.is_file():
                    rows += [{"model": labels[name], "metric": what, "split": split, "epoch": int(r["step"]),
                              "value": number(r[f"{prefix}{metric}"])} for r in read_csv(path, "\t")]
    return rows


def curves_figure(title: str, rows: list[dict[str, Any]]) -> Figure:
    """``family_curves``' rows: loss and top-1 side by side, a colour per model, training solid."""
    x = {"field": "epoch", "type": "quantitative"}
    y = {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False}}
    color = {"field": "model", "type": "nominal", "sort": None}
    line = {"mark": "line", "encoding": {
        "x": x, "y": y, "color": color, "strokeDash": {"field": "split", "type": "nominal", "sort": None},
        "tooltip": [{"field": k} for k in ("model", "split", "epoch", "value")]}}
    # A dot per epoch too: a run of one epoch (no line) still shows.
    dots = {"mark": {"type": "point", "filled": True, "size": 15},
            "encoding": {"x": x, "y": y, "color": color}}
    layers = {"layer": [line, dots], "width": 300, "height": 220}
    facet = {"column": {"field": "metric", "type": "nominal", "title": None, "sort": ["loss", "top-1"]}}
    return Figure("curves", title, figure_spec(title, rows, facet=facet, spec=layers,
                                               resolve={"scale": {"y": "independent"}}))


def gain_figure(dataset: str, better: str, base: str, mine: dict[str, float | None],
                theirs: dict[str, float | None], cues: dict[str, str], metric: str = "top-1") -> Figure:
    """Model ``better``'s per-class ``metric`` (``mine``: class -> a fraction) minus model
    ``base``'s (``theirs``), largest gain first (AVSlowFast Fig. 3), coloured by cue; a class
    either lacks a figure for is left out."""
    rows = sorted(({"class": c, "cue": cues.get(c, "other"), "gain": mine[c] - theirs[c], "value": mine[c],
                    "base_value": theirs[c]}
                   for c in mine if mine[c] is not None and theirs.get(c) is not None),
                  key=lambda r: (-r["gain"], r["class"]))
    shown = rows if len(rows) <= GAIN_CLASSES else rows[:GAIN_CLASSES // 2] + rows[-GAIN_CLASSES // 2:]
    title = f"{dataset}: {better}'s {metric} gain over {base} per class" + (
        f" (the {GAIN_CLASSES // 2} largest and smallest of {len(rows)})" if len(shown) < len(rows) else "")
    spec = figure_spec(title, shown, mark="bar", width=360, height={"step": BAR + 6}, encoding={
        "y": {"field": "class", "type": "nominal", "title": None, "sort": [r["class"] for r in shown]},
        "x": {"field": "gain", "type": "quantitative", "title": f"{metric} gain over {base}",
              "axis": {"format": "+.0%"}},
        "color": {"field": "cue", "type": "nominal", "sort": None},
        "tooltip": [{"field": k} for k in ("class", "cue", "gain", "value", "base_value")]})
    return Figure("gain", title, spec)


def confusion_figure(path: Path, title: str, class_order: list[str], no_prediction: str | None = None) -> Figure:
    """Videos per (true class, predicted class) from a confusion.csv (actual,predicted),
    classes in ``class_order``, the cell ``no_prediction`` (a video without a prediction) in
    its own column, last. Past CONFUSION_CLASSES classes, the true classes with the most
    misclassified videos, the predictions of any other class in one column."""
    pairs = [(r["actual"], r["predicted"]) for r in read_csv(path)]
    order = class_order + sorted({c for pair in pairs for c in pair} - set(class_order) - {no_prediction})
    if len(order) > CONFUSION_CLASSES:
        errors = Counter(a for a, p in pairs if a != p)
        kept = set(sorted(order, key=lambda c: -errors[c])[:CONFUSION_CLASSES])
        order = [c for c in order if c in kept]
        pairs = [(a, p if p in kept or p == no_prediction else OTHER_CLASSES) for a, p in pairs if a in kept]
        title += f", the {CONFUSION_CLASSES} classes most often missed"
    counts = Counter(pairs)
    predicted = order + [c for c in (OTHER_CLASSES, no_prediction) if any(p == c for _, p in counts)]
    rows = [{"actual": a, "predicted": p, "videos": n} for (a, p), n in sorted(counts.items())]
    # Every class a row and a column, whether or not a video lands there: the matrix stays square.
    cell = {"x": {"field": "predicted", "type": "nominal", "scale": {"domain": predicted}, "title": "predicted"},
            "y": {"field": "actual", "type": "nominal", "scale": {"domain": order}, "title": "true class"}}
    spec = figure_spec(title, rows, width={"step": 28}, height={"step": 28}, layer=[
        {"mark": "rect", "encoding": {**cell, "color": {"field": "videos", "type": "quantitative",
                                                          "scale": {"scheme": "blues"}},
                                      "tooltip": [{"field": k} for k in ("actual", "predicted", "videos")]}},
        {"mark": {"type": "text", "fontSize": 9}, "encoding": {**cell, "text": {"field": "videos"}}},
    ])
    return Figure("confusion", title, spec)


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
