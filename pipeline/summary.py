"""Stage ``summary@<report>``: a dataset's results in the shape of its paper table (each
dataset's module writes its own), or the self-supervised backbones' (``ssl``).

    reports/<d>/models/<member>/metrics.json (every member evaluated on d)
    reports/<d>/experiments.json              (optional: seeds and ablations, scripts/experiments.py)
    ──Dataset.summary──> reports/<d>/summary.md (the table, the papers' claims checked on this
                                                 run and over the seeds: pipeline/claims.py)
                         reports/<d>/summary.json (the same figures for `dvc metrics`, and
                                                   each claim's counts under `claims`)
    ──Dataset.figures──> reports/<d>/figures/*.svg (embedded at the end of summary.md)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from avsf.io.atomic import write_json, write_text
from avsf.io.machine import cpu_description, joined
from pipeline.datasets import DATASETS, dataset, pretraining_dataset
from pipeline.figures import write_figures
from pipeline.launch import StageFailed
from pipeline.layout import METRICS_NAME, SSL, Layout
from pipeline.params import Params
from pipeline.recipes import recipe
from pipeline.runs import member_params

log = logging.getLogger("avsf.summary")


def member_results(params: Params, name: str, root: Path = Path()) -> dict[str, dict[str, Any]]:
    """Each member evaluated on dataset ``name``: its metrics.json (under ``root``) with its ``arch``."""
    layout = Layout.of(params.layout)
    results = {}
    for member in dataset(params, name).members(params):
        path = root / layout.model(name, member) / METRICS_NAME
        if not path.is_file():
            raise StageFailed(f"summary: {path} is missing; run the evaluation of {member} on {name} first")
        results[member] = {**json.loads(path.read_text()), "arch": member_params(params, member).model.arch}
    return results


def read_experiments(path: Path) -> dict[str, Any] | None:
    """A seeds-and-ablations record with runs, or None."""
    experiments = json.loads(path.read_text()) if path.is_file() else None
    return experiments if experiments and experiments.get("runs") else None


def run_summary(params: Params, report: str) -> None:
    """Write reports/<report>/summary.md and summary.json: a dataset's evaluated members in
    the shape of its paper's table with the papers' claims checked on this run (and over
    seeds, with reports/<report>/experiments.json), or, for ``ssl``, every self-supervised
    backbone's transfer (Table A.1); its figures in reports/<report>/figures/, embedded at
    the end of summary.md."""
    layout = Layout.of(params.layout)
    if report == SSL:
        from pipeline.ssl_summary import ssl_figures, ssl_results, ssl_summary

        markdown, metrics = ssl_summary(params, read_experiments(layout.experiments(report)))
        figures = ssl_figures(params)
        results = ssl_results(params)
    elif report in DATASETS:
        ds = dataset(params, report)
        results = member_results(params, report)
        if not results:
            raise StageFailed(f"summary: no member is evaluated on {report}")
        markdown, metrics = ds.summary(results, read_experiments(layout.experiments(report)), params)
        figures = ds.figures(results, params)
    else:
        raise StageFailed(f"summary: no report {report!r}; reports: {', '.join((*DATASETS, SSL))}")
    markdown = with_line(markdown, machine_line(results))
    markdown += against_the_paper(params, report)
    # The figures first: summary.md never embeds one that is not written.
    markdown += write_figures(layout.reports / report, figures)
    write_text(layout.summary(report), markdown)
    write_json(layout.summary_metrics(report), metrics)
    log.info("summary@%s: %d models, %d figures -> %s", report, len(results), len(figures), layout.summary(report))


def _lookup(metrics: dict[str, Any], key: str) -> float | None:
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


def against_the_paper(params: Params, report: str, root: Path = Path()) -> str:
    """A section of summary.md: every run of the report that followed a recipe on the real
    dataset (not the demo world), its paper figures beside ours; empty when there is none."""
    layout = Layout.of(params.layout)
    if report == SSL:
        data = pretraining_dataset(params).name
    else:
        data = report
    runs = params.recipes.get(report) or {}
    demo_root = (root / layout.data / "demo").resolve()
    if Path(params.datasets[data].annotations).resolve().is_relative_to(demo_root):
        return ""  # the demo world is not the paper's dataset: nothing to compare
    rows = []
    for run, name in runs.items():
        path = root / layout.model(report, run) / METRICS_NAME
        if name is None or not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        for result in recipe(name).results:
            ours = _lookup(metrics, result.key) if result.key else None
            shown = "-" if ours is None else f"{ours if result.percent else 100 * ours:.1f}"
            rows.append(f"| {run} | {name} | {result.metric} | {result.value} | {shown} | {result.source} |")
    if not rows:
        return ""
    return "\n".join(["", "## Against the paper", "",
                      "Runs that followed a recipe (README \"Recipes\") on the real dataset.", "",
                      "| run | recipe | metric | paper | ours | paper's table |",
                      "| --- | --- | --- | ---: | ---: | --- |", *rows, ""])


def machine_line(results: dict[str, dict[str, Any]]) -> str:
    """The summary's "Machine:" line: what trained and what evaluated its results, as their
    metrics record it (``trained_on``, ``machine``): float results differ between CPUs."""
    trained = joined(r.get("trained_on") for r in results.values())
    evaluated = joined(r.get("machine") for r in results.values())
    if trained is None and evaluated is None:
        return (f"Machine: not recorded in these results' metrics (written before they named their machine); "
                f"this summary was written on {cpu_description()}.")
    if trained == evaluated:
        return f"Machine: trained and evaluated on {trained}."
    return f"Machine: trained on {trained or 'a machine not recorded'}; evaluated on {evaluated or 'a machine not recorded'}."


def with_line(markdown: str, line: str) -> str:
    """``markdown`` with the paragraph ``line`` after its title (its first line, a heading)."""
    title, _, rest = markdown.partition("\n")
    if not title.startswith("#"):
        return f"{line}\n\n{markdown}"
    return "\n\n".join((title, line, rest.lstrip("\n")))
