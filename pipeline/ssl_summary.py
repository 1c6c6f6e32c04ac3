"""The self-supervised backbones' transfer in the shape of AVSlowFast Table A.1 (stage
summary@ssl): pretext, model, top-1 per transfer dataset (the mean over its splits, each
split beside it), with the random and supervised references, and the paper's two claims; its
figure: probe top-1 per backbone and split.

    reports/ssl/models/<backbone>/metrics.json ──> reports/ssl/summary.md, summary.json, figures/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.claims import Claim, Column, Report, claims_metrics, seed_runs, seeds_section, spread
from pipeline.figures import BAR, Figure, figure_spec, number
from pipeline.launch import StageFailed
from pipeline.layout import METRICS_NAME, SSL, Layout
from pipeline.params import Params
from pipeline.probe import backbone_run
from pipeline.runs import PROBE_REFERENCES
from pipeline.tables import LABELS, markdown_table, percent

DATASET_LABELS = {"ucf101": "UCF101", "hmdb51": "HMDB51"}
PRETEXT_LABELS = {"avs": "AVS", "rotation": "ROT"}


def ssl_summary(params: Params, experiments: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """summary.md and summary.json: every backbone's probe top-1 on each transfer dataset
    (mean over the splits, and per split), and whether the self-supervised backbones beat
    random weights and AVS + rotation beats either pretext alone, on this run and over the
    seeds of ``experiments`` (with each pretext's own figures)."""
    results = ssl_results(params)
    report = seeds_report(params)
    metrics: dict[str, Any] = {b: {d: r["mean_top1"] for d, r in m["datasets"].items()} for b, m in results.items()}
    metrics["claims"] = claims_metrics(report, experiments, params.train.seed, results)
    seeds = [*seeds_section(report, experiments), *pretexts_over_seeds(experiments)]
    return summary_markdown(params, results) + "\n".join(seeds) + "\n", metrics


def ssl_results(params: Params, root: Path = Path()) -> dict[str, dict[str, Any]]:
    """Every backbone's probe metrics.json (under ``root``): the references, then each pretext setting."""
    ssl = params.ssl
    if ssl is None:
        raise StageFailed("summary: params.yaml has no ssl section")
    results: dict[str, dict[str, Any]] = {}
    for backbone in (*PROBE_REFERENCES, *ssl.settings):
        path = root / Layout.of(params.layout).model(SSL, backbone) / METRICS_NAME
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
        *(claim.line for claim in claims(params, results)),
    ]) + "\n"


def _mean(results: dict[str, dict[str, Any]], backbone: str) -> float | None:
    """The backbone's top-1 averaged over the transfer datasets (each the mean over its splits)."""
    r = results.get(backbone)
    if r is None:
        return None
    values = [d["mean_top1"] for d in r["datasets"].values()]
    return 100 * sum(values) / len(values)


def claims(params: Params, results: dict[str, dict[str, Any]]) -> list[Claim]:
    """The paper's claims on one run's probes: every pretext setting beats random weights, AVS
    + rotation beats each pretext alone (mean top-1 over the transfer datasets)."""
    settings = params.ssl.settings
    both = [b for b, s in settings.items() if set(s.pretexts) == {"avs", "rotation"}]
    alone = [b for b, s in settings.items() if len(s.pretexts) == 1]
    out = [Claim(f"{b}_vs_random", f"the self-supervised `{b}` backbone beats random weights (mean top-1 over the "
                 f"datasets)", _mean(results, b), _mean(results, "random"), "%", about=(b, "random")) for b in settings]
    for b in both:
        for other in alone:
            out.append(Claim(f"{b}_vs_{other}", f"AVS + rotation (`{b}`) beats "
                             f"{PRETEXT_LABELS[settings[other].pretexts[0]]} alone (`{other}`; the paper, UCF101 split "
                             f"1: 77.0 vs 71.9 ROT, 73.2 AVS)", _mean(results, b), _mean(results, other), "%",
                             about=(b, other)))
    return out


# --------------------------------------------------------------------------- over seeds


def seeds_report(params: Params) -> Report:
    """The seeds' section: each backbone's top-1 per transfer dataset and their mean, the
    claims, and where one is not reproduced the rotation pretext's own accuracy beside chance."""
    datasets = list(params.ssl.probe.datasets)
    columns = [*(Column(f"{DATASET_LABELS.get(d, d)} top-1", lambda r, d=d: 100 * r["datasets"][d]["mean_top1"])
                 for d in datasets),
               Column("mean", lambda r: sum(100 * x["mean_top1"] for x in r["datasets"].values()) / len(r["datasets"]))]
    return Report(SSL, lambda results: claims(params, results), columns,
                  label=lambda b, _: f"{pretext_label(params, b)} (`{b}`)", reason=pretext_reason,
                  member_header="pretext")


def pretext_figures(params: Params, root: Path = Path()) -> dict[str, dict[str, Any]]:
    """Each pretext setting's own figures, from its training summary (under ``root``): its
    pretexts, the final validation (``final``: rotation_top1 where it learns rotation), the
    last epoch's sync loss (AVS records no accuracy), and chance for each accuracy."""
    from avsf.data.rotation import ROTATIONS

    out = {}
    for setting, section in params.ssl.settings.items():
        path = root / Layout.of(params.layout).run(SSL, setting).summary
        if not path.is_file():
            raise StageFailed(f"{path} is missing; run stage pretrain@{setting} first")
        summary = json.loads(path.read_text())
        out[setting] = {"pretexts": list(section.pretexts), "final": summary.get("final", {}),
                        "sync_loss": summary.get("last_epoch", {}).get("sync_loss"),
                        "chance": {"rotation_top1": 1 / ROTATIONS} if "rotation" in section.pretexts else {}}
    return out


def pretext_reason(claim: Claim, runs: list[dict[str, Any]]) -> str | None:
    """Beside a claim on a setting that learns rotation: that pretext's own val accuracy on
    each seed, and chance (None when the record has none)."""
    parts = []
    for setting in claim.about:
        seeds = [(r["seed"], r.get("pretexts", {}).get(setting, {})) for r in runs]
        seeds = [(seed, f) for seed, f in seeds if f.get("final", {}).get("rotation_top1") is not None]
        if not seeds:
            continue
        chance = seeds[0][1].get("chance", {}).get("rotation_top1")
        accuracies = ", ".join(f"{100 * f['final']['rotation_top1']:.0f}%" for _, f in seeds)
        parts.append(f"`{setting}`'s own rotation pretext reached {accuracies} val accuracy on "
                     f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(seed) for seed, _ in seeds)}"
                     + ("" if chance is None else f" (chance {100 * chance:.0f}%)"))
    return "; ".join(parts) or None


def pretexts_over_seeds(experiments: dict[str, Any] | None) -> list[str]:
    """Each pretext setting's own figures over the record's seeds (mean (min..max))."""
    runs = [r for r in seed_runs(experiments) if r.get("pretexts")]
    if not runs:
        return []
    rows = []
    for setting in dict.fromkeys(s for r in runs for s in r["pretexts"]):
        figures = [r["pretexts"][setting] for r in runs if setting in r["pretexts"]]
        label = " + ".join(PRETEXT_LABELS.get(p, p) for p in figures[0]["pretexts"])
        rows.append([f"{label} (`{setting}`)", str(len(figures)), _rotation(figures), _sync(figures)])
    return ["", "Each pretext's own figures over the seeds: rotation, the val accuracy of its rotation head (chance in "
                "brackets); AVS, the sync loss of the last training epoch (it records no accuracy).", "",
            *markdown_table(["setting", "seeds", "rotation val top-1", "AVS sync loss"], rows)]


def _rotation(figures: list[dict[str, Any]]) -> str:
    values = [100 * f["final"]["rotation_top1"] for f in figures if f["final"].get("rotation_top1") is not None]
    if not values:
        return "-"
    chance = figures[0]["chance"].get("rotation_top1")
    return spread(values) + ("" if chance is None else f" [{100 * chance:.1f}]")


def _sync(figures: list[dict[str, Any]]) -> str:
    return spread([f.get("sync_loss") for f in figures if "avs" in f["pretexts"]], digits=3)
