"""The summaries' figures: their data equal the metrics files the tables read (on the
committed demo results), they render to SVG with a mark per value, every committed summary
embeds its own, and the page of `dvc plots show` is the one scripts/plots_page.py makes."""

from __future__ import annotations

import configparser
import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.figures import (NO_PREDICTION, ava_figures, charades_figures, confusion_figure, epic_figures,
                              kinetics_figures, ssl_figures, write_figures)
from pipeline.kinetics_summary import member_metrics
from pipeline.params import load_params
from pipeline.summary import read_finetuned_metrics
from pipeline.vega import PAGE_TEMPLATE, dvc_page_template

SUMMARIES = ("kinetics", "epic", "charades", "ava", "ssl")


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def by_name(figures) -> dict:
    return {f.name: f for f in figures}


def weighted_mean(rows, value: str, weight: str) -> float:
    return sum(r[value] * r[weight] for r in rows) / sum(r[weight] for r in rows)


def test_kinetics_figures_show_the_evaluations_metrics_and_curves(params):
    results = member_metrics(params, REPO)
    figures = by_name(kinetics_figures(results, {n: REPO / params.variant(n).evaluate.out_dir for n in results},
                                       {n: REPO / params.variant(n).train.live_dir for n in results}))
    assert list(figures) == ["curves", "per_class", "gain", "confusion"]
    labels = {"slow": "Slow-only", "slowfast": "SlowFast", "avslowfast": "AVSlowFast", "audio": "Audio-only"}

    per_class = figures["per_class"].rows
    for name, m in results.items():
        mine = [r for r in per_class if r["model"] == labels[name]]
        assert {r["class"]: r["top1"] for r in mine} == {c: v["top1"] for c, v in m["official"]["per_class"].items()}
        # The cues are the evaluation's groups: each group's top-1 is its classes' videos pooled.
        for cue, group in m["official"]["groups"].items():
            assert weighted_mean([r for r in mine if r["cue"] == cue], "top1", "videos") == pytest.approx(group["top1"])

    gain = figures["gain"].rows
    av, sf = results["avslowfast"]["official"]["per_class"], results["slowfast"]["official"]["per_class"]
    assert {r["class"]: r["gain"] for r in gain} == pytest.approx({c: av[c]["top1"] - sf[c]["top1"] for c in av})
    assert [r["gain"] for r in gain] == sorted((r["gain"] for r in gain), reverse=True)

    confusion = figures["confusion"].rows
    official = results["avslowfast"]["official"]
    assert sum(r["videos"] for r in confusion) == official["videos"]
    assert sum(r["videos"] for r in confusion if r["actual"] == r["predicted"]) / official["videos"] == pytest.approx(
        official["top1"])
    assert sum(r["videos"] for r in confusion if r["predicted"] == NO_PREDICTION) == results["avslowfast"]["missing"]

    curves = figures["curves"].rows
    for name in results:
        live = json.loads((REPO / params.variant(name).train.live_dir / "metrics.json").read_text())["epochs"]
        for split, key in (("training", "top1"), ("validation", "val_top1")):
            points = [r for r in curves
                      if r["model"] == labels[name] and r["metric"] == "top-1" and r["split"] == split]
            assert max(points, key=lambda r: r["epoch"])["value"] == live[key]
        assert len([r for r in curves if r["model"] == labels[name] and r["metric"] == "loss"
                    and r["split"] == "training"]) == results[name]["epochs"]


def test_epic_figures_show_per_class_top1_and_the_nouns_by_cue(params):
    results = read_finetuned_metrics(params, "epic", REPO)
    dirs = {m: REPO / params.finetune("epic", m).evaluate.out_dir for m in results}
    figures = by_name(epic_figures(results, dirs))
    labels = {"slowfast": "SlowFast", "avslowfast": "AVSlowFast"}
    for name, m in results.items():
        nouns = [r for r in figures["nouns"].rows if r["model"] == labels[name]]
        table = read_csv(dirs[name] / "noun_accuracy.csv")
        assert [(r["noun"], r["top1"], r["segments"]) for r in sorted(nouns, key=lambda r: r["noun"])] == sorted(
            (r["noun"], float(r["top1"]), int(r["segments"])) for r in table)
        for cue, group in m["noun_groups"].items():  # noun_accuracy.csv's 2 decimals
            assert weighted_mean([r for r in nouns if r["cue"] == cue], "top1", "segments") == pytest.approx(
                group["noun_top1"], abs=0.01)
        verbs = [r for r in figures["verbs"].rows if r["model"] == labels[name]]
        assert sum(r["segments"] for r in verbs) == m["narrations"]
        assert weighted_mean(verbs, "top1", "segments") == pytest.approx(m["verb_top1"])


def test_charades_figure_is_class_ap_csv(params):
    results = read_finetuned_metrics(params, "charades", REPO)
    dirs = {m: REPO / params.finetune("charades", m).evaluate.out_dir for m in results}
    (figure,) = charades_figures(results, dirs)
    for name, label in (("slowfast", "SlowFast"), ("avslowfast", "AVSlowFast")):
        assert [(r["class"], r["ap"], r["positives"]) for r in figure.rows if r["model"] == label] == [
            (r["class"], float(r["ap"]), int(r["positives"])) for r in read_csv(dirs[name] / "class_ap.csv")]


def test_ava_figure_orders_classes_by_frequency_and_colours_the_kinds_as_the_metrics_group_them(params):
    results = read_finetuned_metrics(params, "ava", REPO)
    (figure,) = ava_figures(results)
    counts = results["slowfast"]["class_count"]
    assert list(dict.fromkeys(r["class"] for r in figure.rows)) == sorted(counts, key=lambda c: (-counts[c], c))
    for name, label in (("slowfast", "SlowFast"), ("avslowfast", "AVSlowFast")):
        rows = [r for r in figure.rows if r["model"] == label]
        assert {r["class"]: r["ap"] for r in rows} == results[name]["class_ap"]
        by_kind = defaultdict(list)
        for r in rows:
            by_kind[r["kind"]].append(r["ap"])
        assert {k: sum(v) / len(v) for k, v in by_kind.items()} == pytest.approx(results[name]["group_map"])


def test_ssl_figure_is_every_probe_split():
    reports = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "reports/ssl/probe").glob("*.json"))}
    (figure,) = ssl_figures(reports, {"ucf101": "UCF101", "hmdb51": "HMDB51"})
    expected = {(b, {"ucf101": "UCF101", "hmdb51": "HMDB51"}[d], f"split {k}"): s["top1"]
                for b, r in reports.items() for d, ds in r["datasets"].items() for k, s in ds["splits"].items()}
    assert {(r["backbone"], r["dataset"], r["split"]): r["top1"] for r in figure.rows} == expected
    assert len(expected) == len(reports) * 2 * 3


def test_a_figure_without_its_inputs_is_left_out_and_a_missing_value_draws_no_bar(tmp_path):
    per_class = {"official": {"per_class": {"beeping": {"top1": 0.5, "videos": 2}, "red square": {"top1": 1.0,
                                                                                                "videos": 2}}}}
    results = {"slow": {"arch": "slow", **per_class}, "audio": {"arch": "audio", **per_class}}
    # No AVSlowFast and SlowFast to compare, no confusion.csv, no curves: the per-class figure only.
    assert [f.name for f in kinetics_figures(results, {}, {"slow": tmp_path / "none"})] == ["per_class"]
    (tmp_path / "m").mkdir()
    (tmp_path / "m/class_ap.csv").write_text("class,ap,positives\nHolding a box,nan,0\nSitting,0.5,2\n")
    (figure,) = charades_figures({"m": {"arch": "slowfast"}}, {"m": tmp_path / "m"})
    assert [r["ap"] for r in figure.rows] == [None, 0.5]  # NaN is no JSON: an empty bar
    write_figures(tmp_path, [figure])
    assert svg_marks((tmp_path / "figures/class_ap.svg").read_text()) == 1


def test_past_40_classes_the_confusion_keeps_the_classes_most_often_missed(tmp_path):
    classes = [f"class {i:02d}" for i in range(60)]
    # Class i: i % 10 of its 10 videos predicted as the next class, the rest right.
    rows = [(c, classes[(i + 1) % 60] if k < i % 10 else c) for i, c in enumerate(classes) for k in range(10)]
    (tmp_path / "confusion.csv").write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in rows))
    figure = confusion_figure(tmp_path / "confusion.csv", "AVSlowFast", classes)
    # 36 classes miss 4 to 9 videos each; 4 of the 6 that miss 3 make up the 40.
    kept = {c for i, c in enumerate(classes) if i % 10 >= 4}
    shown = {r["actual"] for r in figure.rows}
    assert len(shown) == 40 and kept < shown and all(int(c[-2:]) % 10 == 3 for c in shown - kept)
    assert sum(r["videos"] for r in figure.rows) == 400  # every video of a kept class
    assert {r["predicted"] for r in figure.rows} - shown <= {"(other classes)"}


def svg_marks(svg_text: str, mark: str = "rect") -> int:
    """The items drawn in an SVG's data marks of type ``mark`` (a path per bar or cell, a
    text element per label)."""
    root = ET.fromstring(svg_text)
    return sum(len(g) for g in root.iter("{http://www.w3.org/2000/svg}g")
               if f"mark-{mark} role-mark" in g.get("class", ""))


def test_write_figures_renders_a_bar_per_value_and_replaces_the_folder(params, tmp_path):
    results = read_finetuned_metrics(params, "ava", REPO)
    figures = ava_figures(results) + kinetics_figures(
        member_metrics(params, REPO), {n: REPO / params.variant(n).evaluate.out_dir for n in params.family}, {})
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "stale.svg").write_text("<svg/>")
    markdown = write_figures(tmp_path, figures)
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == sorted(f"{f.name}.svg" for f in figures)  # the earlier run's file is gone
    assert re.findall(r"!\[[^]]+\]\((figures/[a-z_]+\.svg)\)", markdown) == [f"figures/{f.name}.svg" for f in figures]
    shown = {f.name: (tmp_path / "figures" / f"{f.name}.svg").read_text() for f in figures}
    assert svg_marks(shown["class_ap"]) == len(figures[0].rows) == 2 * 6
    by = by_name(figures)
    assert svg_marks(shown["per_class"]) == len(by["per_class"].rows) == 4 * 8
    assert svg_marks(shown["confusion"]) == len(by["confusion"].rows)
    assert svg_marks(shown["confusion"], "text") == len(by["confusion"].rows)


def test_every_committed_summary_embeds_its_figures_and_they_are_outputs_of_its_stage():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in SUMMARIES:
        folder = REPO / "reports" / name
        embedded = re.findall(r"!\[[^]]+\]\(figures/([^)]+)\)", (folder / "summary.md").read_text())
        assert embedded and sorted(embedded) == sorted(p.name for p in (folder / "figures").iterdir()), name
        for svg_name in embedded:
            assert ET.fromstring((folder / "figures" / svg_name).read_text()).tag == "{http://www.w3.org/2000/svg}svg"
        outputs = [next(iter(p)) for p in stages[f"{name}_summary"]["plots"]]
        assert any(o.endswith("/figures") for o in outputs), name


def test_dvc_plots_page_is_configured_and_current():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc/config")
    assert REPO / ".dvc" / config["plots"]["html_template"] == REPO / PAGE_TEMPLATE
    page = (REPO / PAGE_TEMPLATE).read_text(encoding="utf8")
    assert page == dvc_page_template(), "stale: run python scripts/plots_page.py"
    # DVC fills {plot_divs}; {scripts} would bring its CDN script tags back.
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
