"""The summaries' figures: each dataset's figures hold exactly the values of the files they are
drawn from (written here at the layout's paths, as the evaluation writes them), they render to
SVG with a mark per value, a figure without its inputs is left out, the summary stage embeds
what it writes, and the page of `dvc plots show` is the one scripts/plots_page.py makes."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.datasets import dataset
from pipeline.figures import FIGURES_DIR, confusion_figure, write_figures
from pipeline.layout import PER_CLASS_NAME, REPORTS, RESULTS_DIR, Layout
from pipeline.params import load_params
from pipeline.summary import member_results, run_summary, with_line
from pipeline.ssl_summary import ssl_figures
from pipeline.vega import PAGE_TEMPLATE, dvc_page_template

SUMMARIES = ("kinetics", "epic", "epic55", "charades", "ava", "ssl")
LABELS = {"slowfast": "SlowFast", "avslowfast": "AVSlowFast"}


@pytest.fixture()
def params(tmp_path):
    return load_params(REPO / "params.yaml", [f"layout.reports={tmp_path / 'reports'}",
                                              f"layout.data={tmp_path / 'data'}"])


def write_csv(path: Path, header: str, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def by_name(figures) -> dict:
    return {f.name: f for f in figures}


def svg_marks(svg_text: str, mark: str = "rect") -> int:
    """The items drawn in an SVG's data marks of type ``mark`` (a path per bar or cell, a
    text element per label)."""
    root = ET.fromstring(svg_text)
    return sum(len(g) for g in root.iter("{http://www.w3.org/2000/svg}g")
               if f"mark-{mark} role-mark" in g.get("class", ""))


# Kinetics: one class of each of the demo's cues; AVSlowFast has no figure for drumming.
KINETICS_TOP1 = {"slowfast": {"red square": 1.0, "blinking light": 0.5, "beeping": 0.25, "drumming": 0.75},
                 "avslowfast": {"red square": 0.75, "blinking light": 0.75, "beeping": 1.0, "drumming": None}}
CUES = {"red square": "appearance", "blinking light": "motion", "beeping": "sound", "drumming": "audiovisual"}


def kinetics_results() -> dict:
    return {m: {"arch": m, "official": {"per_class": {c: {"top1": v, "videos": 4} for c, v in top1.items()}}}
            for m, top1 in KINETICS_TOP1.items()}


def write_curves(layout: Layout, member: str, epochs: int) -> dict[str, list[float]]:
    """DVCLive's per-epoch curves of ``member`` (a training and a validation loss and top-1)."""
    curves = {}
    for i, metric in enumerate(("loss", "val_loss", "top1", "val_top1")):
        curves[metric] = [round(0.1 * (i + 1) * (e + 1), 3) for e in range(epochs)]
        path = layout.run("kinetics", member).live_dir / REPORTS["epochs"] / f"{metric}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{metric}\n" + "".join(f"{e + 1}\t{v}\n" for e, v in enumerate(curves[metric])))
    return curves


def test_kinetics_figures_show_the_per_class_figures_curves_gain_and_confusion(params):
    kinetics = dataset(params, "kinetics")
    results = kinetics_results()
    curves = {m: write_curves(kinetics.layout, m, epochs) for m, epochs in (("slowfast", 3), ("avslowfast", 2))}
    # AVSlowFast's 16 videos: 3 of red square right, 1 as beeping; 2 of blinking light missing a prediction ...
    confusion = [("red square", "red square")] * 3 + [("red square", "beeping")] + \
        [("blinking light", "blinking light")] * 2 + [("blinking light", "(no prediction)")] * 2 + \
        [("beeping", "beeping")] * 4 + [("drumming", "whistling")] * 4
    write_csv(kinetics.layout.model("kinetics", "avslowfast") / RESULTS_DIR / "confusion.csv", "actual,predicted",
              confusion)
    figures = by_name(kinetics.figures(results, params))
    assert list(figures) == ["curves", "per_class", "gain", "confusion"]

    per_class = figures["per_class"].rows
    assert [(r["cue"], r["class"]) for r in per_class][::2] == [
        ("appearance", "red square"), ("motion", "blinking light"), ("sound", "beeping"), ("audiovisual", "drumming")]
    for member, top1 in KINETICS_TOP1.items():
        assert {r["class"]: r["top1"] for r in per_class if r["model"] == LABELS[member]} == top1
        assert all(r["cue"] == CUES[r["class"]] and r["videos"] == 4 for r in per_class)

    gain = figures["gain"].rows  # drumming has no AVSlowFast figure: no gain
    assert [(r["class"], r["gain"], r["cue"]) for r in gain] == [
        ("beeping", 0.75, "sound"), ("blinking light", 0.25, "motion"), ("red square", -0.25, "appearance")]
    assert figures["gain"].title == "Kinetics: AVSlowFast's top-1 gain over SlowFast per class"

    cells = {(r["actual"], r["predicted"]): r["videos"] for r in figures["confusion"].rows}
    assert cells == {("red square", "red square"): 3, ("red square", "beeping"): 1,
                     ("blinking light", "blinking light"): 2, ("blinking light", "(no prediction)"): 2,
                     ("beeping", "beeping"): 4, ("drumming", "whistling"): 4}
    x = figures["confusion"].spec["layer"][0]["encoding"]["x"]["scale"]["domain"]
    assert x == ["red square", "blinking light", "beeping", "drumming", "whistling", "(no prediction)"]

    rows = figures["curves"].rows
    for member, label in LABELS.items():
        for metric, split, key in (("loss", "training", "loss"), ("loss", "validation", "val_loss"),
                                   ("top-1", "training", "top1"), ("top-1", "validation", "val_top1")):
            points = [r for r in rows if (r["model"], r["metric"], r["split"]) == (label, metric, split)]
            assert [(r["epoch"], r["value"]) for r in points] == list(enumerate(curves[member][key], 1))


def test_a_figure_without_its_inputs_is_left_out_and_a_missing_value_draws_no_bar(params, caplog):
    kinetics = dataset(params, "kinetics")
    results = {m: r for m, r in kinetics_results().items() if m == "avslowfast"}
    # No SlowFast to compare with, no confusion.csv, no curves: the per-class figure only, and why.
    assert [f.name for f in kinetics.figures(results, params)] == ["per_class"]
    assert "Kinetics curves left out: " in caplog.text and "confusion.csv is missing" in caplog.text

    charades = dataset(params, "charades")
    members = {"slowfast": {"arch": "slowfast"}, "avslowfast": {"arch": "avslowfast"}}
    write_csv(charades.layout.model("charades", "slowfast") / PER_CLASS_NAME, "class,value,count",
              [("Holding a box", "", 0), ("Sitting", 0.5, 2)])
    assert charades.figures(members, params) == []  # AVSlowFast's per_class.csv is missing
    write_csv(charades.layout.model("charades", "avslowfast") / PER_CLASS_NAME, "class,value,count",
              [("Holding a box", "", 0), ("Sitting", 0.25, 2)])
    (figure,) = charades.figures(members, params)
    assert [(r["model"], r["class"], r["value"], r["count"]) for r in figure.rows] == [
        ("SlowFast", "Holding a box", None, 0), ("SlowFast", "Sitting", 0.5, 2),  # no AP: no bar
        ("AVSlowFast", "Holding a box", None, 0), ("AVSlowFast", "Sitting", 0.25, 2)]
    assert figure.title == "Charades: AP per class"
    write_figures(params.layout.reports, [figure])
    assert svg_marks((Path(params.layout.reports) / "figures" / f"{figure.name}.svg").read_text()) == 2


@pytest.mark.parametrize("name, header", [
    ("epic", "narration_id,participant_id,verb,noun,predicted_verb,predicted_noun,noun_cue"),
    ("epic55", "uid,participant_id,verb,noun,predicted_verb,predicted_noun,noun_cue")])
def test_epic_figures_show_verb_top1_from_the_predictions_and_nouns_by_cue(params, name, header):
    epic = dataset(params, name)
    results = {"slowfast": {"arch": "slowfast"}, "avslowfast": {"arch": "avslowfast"}}
    predictions = {  # (verb, predicted verb, noun, its cue)
        "slowfast": [("take", "take", "kettle", "sound"), ("take", "put", "plate", "appearance"),
                     ("put", "(no prediction)", "kettle", "sound")],
        "avslowfast": [("take", "take", "kettle", "sound"), ("take", "take", "plate", "appearance"),
                       ("put", "put", "kettle", "sound")]}
    for member, rows in predictions.items():
        write_csv(epic.layout.model(name, member) / RESULTS_DIR / "predictions.csv", header,
                  [(f"P01_{i}", "P01", v, n, p, "tap", cue) for i, (v, p, n, cue) in enumerate(rows)])
        write_csv(epic.layout.model(name, member) / PER_CLASS_NAME, "class,value,count",
                  [("kettle", 50.0 if member == "slowfast" else 100.0, 2), ("plate", 0.0, 1)])
    figures = by_name(epic.figures(results, params))
    assert list(figures) == ["verbs", "nouns"]
    assert figures["verbs"].title == f"{epic.title}: verb top-1 (%) per verb"
    assert [(r["model"], r["verb"], r["top1"], r["segments"]) for r in figures["verbs"].rows] == [
        ("SlowFast", "take", 50.0, 2), ("SlowFast", "put", 0.0, 1),  # no prediction: a miss
        ("AVSlowFast", "take", 100.0, 2), ("AVSlowFast", "put", 100.0, 1)]
    assert [(r["cue"], r["model"], r["noun"], r["top1"], r["segments"]) for r in figures["nouns"].rows] == [
        ("appearance", "SlowFast", "plate", 0.0, 1), ("appearance", "AVSlowFast", "plate", 0.0, 1),
        ("sound", "SlowFast", "kettle", 50.0, 2), ("sound", "AVSlowFast", "kettle", 100.0, 2)]


def test_ava_figure_orders_classes_by_frequency_and_colours_the_kinds_as_the_demo_groups_them(params):
    ava = dataset(params, "ava")
    counts = {"sit": 3, "hand clap": 5, "walk": 3, "crawl": 1}
    results = {"slowfast": {"arch": "slowfast", "class_count": counts,
                            "class_ap": {"sit": 0.5, "hand clap": 0.25, "walk": 1.0, "crawl": None}},
               "avslowfast": {"arch": "avslowfast", "class_count": counts,
                              "class_ap": {"sit": 0.5, "hand clap": 0.75, "walk": 0.5}}}
    (figure,) = ava.figures(results, params)
    assert [(r["class"], r["kind"], r["boxes"], r["model"], r["ap"]) for r in figure.rows] == [
        ("hand clap", "sound", 5, "SlowFast", 0.25), ("hand clap", "sound", 5, "AVSlowFast", 0.75),
        ("sit", "pose", 3, "SlowFast", 0.5), ("sit", "pose", 3, "AVSlowFast", 0.5),
        ("walk", "movement", 3, "SlowFast", 1.0), ("walk", "movement", 3, "AVSlowFast", 0.5),
        ("crawl", "pose", 1, "SlowFast", None), ("crawl", "pose", 1, "AVSlowFast", None)]


def test_ssl_figure_is_every_probe_split(params):
    layout = Layout.of(params.layout)
    expected = {}
    for i, backbone in enumerate(("random", "supervised", *params.ssl.settings)):
        datasets = {}
        for d, label in (("ucf101", "UCF101"), ("hmdb51", "HMDB51")):
            splits = {str(k): {"top1": round(0.1 * i + 0.01 * k, 3)} for k in params.ssl.probe.splits}
            datasets[d] = {"mean_top1": sum(s["top1"] for s in splits.values()) / len(splits), "splits": splits}
            expected.update({(backbone, label, f"split {k}"): s["top1"] for k, s in splits.items()})
        path = layout.model("ssl", backbone) / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"datasets": datasets}))
    (figure,) = ssl_figures(params)
    assert {(r["backbone"], r["dataset"], r["split"]): r["top1"] for r in figure.rows} == expected
    assert len(expected) == 5 * 2 * 3


def test_past_40_classes_the_confusion_keeps_the_classes_most_often_missed(tmp_path):
    classes = [f"class {i:02d}" for i in range(60)]
    # Class i: i % 10 of its 10 videos predicted as the next class, the rest right.
    rows = [(c, classes[(i + 1) % 60] if k < i % 10 else c) for i, c in enumerate(classes) for k in range(10)]
    figure = confusion_figure(write_csv(tmp_path / "confusion.csv", "actual,predicted", rows), "confusion",
                              classes)
    # 36 classes miss 4 to 9 videos each; 4 of the 6 that miss 3 make up the 40.
    kept = {c for i, c in enumerate(classes) if i % 10 >= 4}
    shown = {r["actual"] for r in figure.rows}
    assert len(shown) == 40 and kept < shown and all(int(c[-2:]) % 10 == 3 for c in shown - kept)
    assert sum(r["videos"] for r in figure.rows) == 400  # every video of a kept class
    assert {r["predicted"] for r in figure.rows} - shown <= {"(other classes)"}
    assert figure.title == "confusion, the 40 classes most often missed"


def test_write_figures_renders_a_mark_per_value_and_replaces_the_folder(params, tmp_path):
    kinetics = dataset(params, "kinetics")
    write_csv(kinetics.layout.model("kinetics", "avslowfast") / RESULTS_DIR / "confusion.csv", "actual,predicted",
              [("beeping", "beeping"), ("beeping", "humming"), ("drumming", "drumming")])
    figures = kinetics.figures(kinetics_results(), params)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "stale.svg").write_text("<svg/>")
    markdown = write_figures(tmp_path, figures)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(f"{f.name}.svg" for f in figures)
    assert re.findall(r"!\[[^]]+\]\((figures/[a-z_]+\.svg)\)", markdown) == [f"figures/{f.name}.svg" for f in figures]
    shown = {f.name: (tmp_path / "figures" / f"{f.name}.svg").read_text() for f in figures}
    by = by_name(figures)
    assert svg_marks(shown["per_class"]) == len(by["per_class"].rows) - 1 == 7  # drumming's None: no bar
    assert svg_marks(shown["gain"]) == len(by["gain"].rows) == 3
    assert svg_marks(shown["confusion"]) == svg_marks(shown["confusion"], "text") == len(by["confusion"].rows) == 3


def test_the_summary_stage_embeds_the_figures_it_writes(params, tmp_path):
    """summary@ava on the committed AVA evaluations: summary.md is the table, then its figure."""
    reports = Path(params.layout.reports)
    shutil.copytree(REPO / "reports/ava/models", reports / "ava/models")
    for path in (reports / "ava/models").glob("*/metrics.json"):  # as the evaluation records them
        path.write_text(json.dumps({**json.loads(path.read_text()), "machine": "CPU A", "trained_on": "CPU B"}))
    (reports / "ava" / FIGURES_DIR).mkdir()
    (reports / "ava" / FIGURES_DIR / "stale.svg").write_text("<svg/>")
    run_summary(params, "ava")
    summary = (reports / "ava/summary.md").read_text()
    table, figures = summary.split("\n## Figures\n")
    markdown, _ = dataset(params, "ava").summary(member_results(params, "ava"), None, params)
    # the paper's table, with the machines that trained and evaluated its models under its title
    assert table.split("\n\n")[1] == "Machine: trained on CPU B; evaluated on CPU A."
    assert table == with_line(markdown, "Machine: trained on CPU B; evaluated on CPU A.")
    assert re.findall(r"!\[[^]]+\]\(figures/([^)]+)\)", figures) == ["class_ap.svg"]
    assert [p.name for p in (reports / "ava" / FIGURES_DIR).iterdir()] == ["class_ap.svg"]


def test_every_committed_summary_embeds_the_figures_beside_it_and_they_are_outputs_of_its_stage():
    for name in SUMMARIES:
        folder = REPO / "reports" / name
        embedded = re.findall(r"!\[[^]]+\]\(figures/([^)]+)\)", (folder / "summary.md").read_text())
        written = sorted(p.name for p in (folder / "figures").iterdir()) if (folder / "figures").is_dir() else []
        assert sorted(embedded) == written, name
        for svg_name in embedded:
            assert ET.fromstring((folder / "figures" / svg_name).read_text()).tag == "{http://www.w3.org/2000/svg}svg"
    summary = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["summary"]
    assert summary["foreach"] == list(SUMMARIES)
    assert [next(iter(p)) for p in summary["do"]["plots"]] == ["${layout.reports}/${item}/${REPORTS.figures}"]


def test_dvc_plots_page_is_configured_and_current():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc/config")
    assert REPO / ".dvc" / config["plots"]["html_template"] == REPO / PAGE_TEMPLATE
    page = (REPO / PAGE_TEMPLATE).read_text(encoding="utf8")
    assert page == dvc_page_template(), "stale: run python scripts/plots_page.py"
    # DVC fills {plot_divs}; {scripts} would bring its CDN script tags back.
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
