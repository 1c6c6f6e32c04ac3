"""The self-supervised backbones' transfer in the shape of AVSlowFast Table A.1 (stage
summary@ssl): pretext, model, top-1 per transfer dataset (the mean over its splits, each
split beside it), with the random and supervised references, and the paper's two claims; its
figure: probe top-1 per backbone and split.

    reports/ssl/models/<backbone>/metrics.json ──> reports/ssl/summary.md, summary.json, figures/
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.figures import BAR, Figure, figure_spec, number
from pipeline.launch import StageFailed
from pipeline.layout import METRICS_NAME, SSL, Layout
from pipeline.params import Params
from pipeline.probe import backbone_run
from pipeline.runs import PROBE_REFERENCES
from pipeline.tables import LABELS, claim_line, markdown_table, percent

DATASET_LABELS = {"ucf101": "UCF101", "hmdb51": "HMDB51"}
PRETEXT_LABELS = {"avs": "AVS", "rotation": "ROT"}


def ssl_summary(params: Params) -> tuple[str, dict[str, Any]]:
    """summary.md and summary.json: every backbone's probe top-1 on each transfer dataset
    (mean over the splits, and per split), and whether the self-supervised backbones beat
    random weights and AVS + rotation beats either pretext alone."""
    results = ssl_results(params)
    return summary_markdown(params, results), {b: {d: r["mean_top1"] for d, r in m["datasets"].items()}
                                               for b, m in results.items()}


def ssl_results(params: Params) -> dict[str, dict[str, Any]]:
    """Every backbone's probe metrics.json: the references, then each pretext setting."""
    ssl = params.ssl
    if ssl is None:
        raise StageFailed("summary: params.yaml has no ssl section")
    results: dict[str, dict[str, Any]] = {}
    for backbone in (*PROBE_REFERENCES, *ssl.settings):
        path = Layout.of(params.layout).model(SSL, backbone) / METRICS_NAME
        if not path.is_file():
            stage = f"probe_reference@{backbone}" if backbone in PROBE_REFERENCES else f"probe@{backbone}"
            raise StageFailed(f"summary: {path} is missing; run stage {stage} first")
        results[backbone] = json.loads(path.read_text())
    return results


def ssl_figures(params: Params) -> list[Figure]:
    """Probe top-1 of every backbone on each split of each transfer dataset, the mean over
    the splits as a tick."""
    rows = [{"backbone": backbone, "dataset": DATASET_LABELS.get(d, d), "split": f"split {k}",
             "top1": number(s["top1"]), "mean_top1": number(r["mean_top1"])}
            for backbone, report in ssl_results(params).items() for d, r in report["datasets"].items()
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
    facet = {"column": {"field": "dataset", "type": "nominal", "title": None, "sort": None}}
    return [Figure("probe", title, figure_spec(title, rows, facet=facet,
                                               spec={"layer": layer, "width": {"step": BAR + 4}, "height": 220}))]


def pretext_label(params: Params, backbone: str) -> str:
    if backbone == "random":
        return "none (random weights)"
    if backbone == "supervised":
        return "Kinetics labels (supervised)"
    return " + ".join(PRETEXT_LABELS[p] for p in params.ssl.settings[backbone].pretexts)


def model_label(params: Params, backbone: str) -> str:
    arch = backbone_run(params, backbone)[0].params.model.arch
    return LABELS.get(arch, arch)


def summary_markdown(params: Params, results: dict[str, dict[str, Any]]) -> str:
    ssl = params.ssl
    datasets = list(ssl.probe.datasets)
    header = ["pretext", "model", *(f"{DATASET_LABELS[d]} top-1" for d in datasets),
              *(f"{DATASET_LABELS[d]} splits {', '.join(map(str, ssl.probe.splits))}" for d in datasets)]
    rows = []
    for backbone, r in results.items():
        means = [percent(r["datasets"][d]["mean_top1"]) for d in datasets]
        per_split = [" / ".join(percent(s["top1"]) for s in r["datasets"][d]["splits"].values()) for d in datasets]
        rows.append([f"{pretext_label(params, backbone)} (`{backbone}`)", model_label(params, backbone), *means,
                     *per_split])
    first = next(iter(results.values()))["datasets"]
    sizes = ", ".join(f"{DATASET_LABELS[d]} {first[d]['classes']} classes, split 1: "
                      f"{first[d]['splits'][str(ssl.probe.splits[0])]['train_videos']} train / "
                      f"{first[d]['splits'][str(ssl.probe.splits[0])]['test_videos']} test videos" for d in datasets)
    mode = ("linear probe: the backbone frozen (BN included), a new fc trained on the pooled features of "
            f"{ssl.probe.train_views} random train clips per video, half-period cosine"
            if ssl.probe.mode == "linear" else "every layer fine-tuned from the backbone, one run per split")
    return "\n".join([
        "# Self-supervised pretraining: transfer to UCF101 and HMDB51 (AVSlowFast Table A.1's shape, in miniature)",
        "", f"Pretrained on the Kinetics demo store without its labels; {mode}. Top-1: the mean over the splits "
        f"(each split's figure beside it); a test video missing from the store counts as a miss. {sizes}.", "",
        *markdown_table(header, rows), "",
        "## The paper's claims on this run", "",
        *claims(params, results),
    ]) + "\n"


def _mean(results: dict[str, dict[str, Any]], backbone: str) -> float | None:
    """The backbone's top-1 averaged over the transfer datasets (each the mean over its splits)."""
    r = results.get(backbone)
    if r is None:
        return None
    values = [d["mean_top1"] for d in r["datasets"].values()]
    return 100 * sum(values) / len(values)


def claims(params: Params, results: dict[str, dict[str, Any]]) -> list[str]:
    settings = params.ssl.settings
    both = [b for b, s in settings.items() if set(s.pretexts) == {"avs", "rotation"}]
    alone = [b for b, s in settings.items() if len(s.pretexts) == 1]
    lines = [claim_line(f"the self-supervised `{b}` backbone beats random weights (mean top-1 over the datasets)",
                        _mean(results, b), _mean(results, "random"), "%") for b in settings]
    for b in both:
        for other in alone:
            lines.append(claim_line(f"AVS + rotation (`{b}`) beats {PRETEXT_LABELS[settings[other].pretexts[0]]} "
                                    f"alone (`{other}`; the paper, UCF101 split 1: 77.0 vs 71.9 ROT, 73.2 AVS)",
                                    _mean(results, b), _mean(results, other), "%"))
    return lines
