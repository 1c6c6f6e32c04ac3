"""Stage ``kinetics_summary``: the family's Kinetics results as AVSlowFast Tables 5 and A.3 show them.

    evaluate.out_dir/models/<member>/metrics.json (every member of params.yaml's family)
    evaluate.out_dir/experiments.json      (optional: scripts/kinetics_experiments.py's seeds
                                            and dvc exp ablations)
    ──> evaluate.out_dir/summary.md   the table, the papers' claims checked, seeds, ablations
        evaluate.out_dir/summary.json the same figures for `dvc metrics`

Every accuracy carries its binomial standard error, sqrt(p (1 - p) / n), so a gap can be
told from noise; over seeds, the mean and the spread (min..max) are given.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from avsf.io.atomic import write_json, write_text
from pipeline.evaluate import METRICS_NAME
from pipeline.figures import kinetics_figures, write_figures
from pipeline.launch import StageFailed
from pipeline.params import Params
from pipeline.summary import LABELS, percent, read_member_metrics

log = logging.getLogger("avsf.summary")

EXPERIMENTS_NAME, SUMMARY_MD, SUMMARY_JSON = "experiments.json", "summary.md", "summary.json"
DEMO_GROUPS = ("appearance", "motion", "sound", "audiovisual")


def claims(results: dict[str, dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """The papers' claims in miniature, on one run's per-member metrics: (claim, held or None
    when a member it needs is missing, the figures)."""
    by_arch: dict[str, dict[str, Any]] = {}
    for m in results.values():  # the first member of each arch stands for it
        by_arch.setdefault(m["arch"], m)

    def group(arch: str, name: str) -> float | None:
        m = by_arch.get(arch)
        g = m and m["official"]["groups"].get(name)
        return None if not g else g["top1"]

    out = []
    for claim, (a, b, g) in {
        "SlowFast beats Slow-only on the motion classes": ("slowfast", "slow", "motion"),
        "AVSlowFast beats SlowFast on the sound classes": ("avslowfast", "slowfast", "sound"),
    }.items():
        x, y = group(a, g), group(b, g)
        out.append((claim, None if x is None or y is None else x > y,
                    "" if x is None or y is None else f"{x:.3f} vs {y:.3f}"))
    # Audio-only: above every visual-only member on the sound classes, below the best of them
    # on the appearance and motion classes (Slow-only cannot see the flicker, and the
    # audiovisual classes sound distinct too, so neither says what audio alone lacks).
    audio, visual = by_arch.get("audio"), [a for a in ("slow", "fast", "slowfast") if a in by_arch]
    claim = "Audio-only is strong only on the sound classes (above the visual models there, below the best of them on appearance and motion)"
    if audio is None or not visual:
        out.append((claim, None, ""))
    else:
        parts, held = [], True
        for g, above in (("sound", True), ("appearance", False), ("motion", False)):
            mine, theirs = group("audio", g), [group(a, g) for a in visual]
            if mine is None or None in theirs:
                continue
            best = max(theirs)
            held &= mine > best if above else mine < best
            parts.append(f"{g} {mine:.3f} vs the visual models' best {best:.3f}")
        out.append((claim, held if parts else None, "; ".join(parts)))
    return out


def member_metrics(params: Params, root: Path = Path()) -> dict[str, dict[str, Any]]:
    """Every family member's evaluate metrics (with its ``arch``), read under ``root``."""
    return read_member_metrics("kinetics_summary", list(params.family),
                               lambda name: root / params.variant(name).evaluate.out_dir / METRICS_NAME,
                               lambda name: params.variant(name).model.arch)


def run_kinetics_summary(params: Params) -> None:
    """Write evaluate.out_dir/summary.md (and summary.json): every family member's multi-view
    accuracy, per-group accuracy, parameters and GFLOPs x views in the shape of AVSlowFast
    Table 5 / A.3, the papers' claims checked on this run, and the seeds and ablations that
    scripts/kinetics_experiments.py measured (evaluate.out_dir/experiments.json), if any."""
    out_dir = Path(params.evaluate.out_dir)
    results = member_metrics(params)
    if not results:
        raise StageFailed("kinetics_summary: params.yaml's family is empty")
    experiments_path = out_dir / EXPERIMENTS_NAME
    experiments = json.loads(experiments_path.read_text()) if experiments_path.is_file() else None
    experiments = experiments if experiments and experiments.get("runs") else None
    figures = kinetics_figures(results, {n: Path(params.variant(n).evaluate.out_dir) for n in results},
                               {n: Path(params.variant(n).train.live_dir) for n in results})
    write_text(out_dir / SUMMARY_MD, summary_markdown(params, results, experiments) + write_figures(out_dir, figures))
    write_json(out_dir / SUMMARY_JSON, summary_metrics(results))
    log.info("kinetics_summary: %d models%s -> %s", len(results),
             f", {len(experiments['runs'])} experiment runs" if experiments else "", out_dir / SUMMARY_MD)


def summary_metrics(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: {"top1": m["top1"], "top5": m["top5"],
                   **{f"{g}_top1": v["top1"] for g, v in m["official"]["groups"].items()}}
            for name, m in results.items()}


def _groups(results: dict[str, dict[str, Any]]) -> list[str]:
    seen = {g for m in results.values() for g in m["official"]["groups"]}
    return [g for g in DEMO_GROUPS if g in seen] + sorted(seen - set(DEMO_GROUPS))


def summary_markdown(params: Params, results: dict[str, dict[str, Any]], experiments: dict | None) -> str:
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
    for claim, held, figures in claims(results):
        mark = "not measured" if held is None else ("holds" if held else "does not hold")
        lines.append(f"- {claim}: **{mark}**" + (f" ({figures})" if figures else ""))
    if experiments:
        lines += experiments_markdown(experiments, groups)
    else:
        lines += ["", "Seeds and ablations: not measured yet (`python scripts/kinetics_experiments.py`)."]
    return "\n".join(lines) + "\n"


def _spread(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]  # a group with no video in the split
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * min(values):.1f}..{100 * max(values):.1f})"


def experiments_markdown(experiments: dict[str, Any], groups: list[str]) -> list[str]:
    """The seeds (every member per seed) and the ablations (AVSlowFast per setting), each as
    mean (min..max) over the seeds measured, and the claims per seed."""
    runs = experiments["runs"]
    lines = ["", "## Over seeds", "",
             f"`{experiments['command']}` on {experiments['machine']}, {experiments['date']}: "
             f"{experiments['seconds'] / 60:.0f} minutes. Mean (min..max) over the seeds.", ""]
    family_runs = [r for r in runs if r["kind"] == "seed"]
    members = list(dict.fromkeys(n for r in family_runs for n in r["results"]))
    lines += ["| model | seeds | top-1 | " + " | ".join(groups) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in groups) + " |"]
    for name in members:
        ms = [r["results"][name] for r in family_runs if name in r["results"]]
        cells = [_spread([m["official"]["groups"][g]["top1"] for m in ms
                          if g in m["official"]["groups"]]) for g in groups]
        lines.append(f"| {LABELS.get(ms[0]['arch'], name)} | {len(ms)} | {_spread([m['top1'] for m in ms])} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Claims per seed:", ""]
    table = [(r["seed"], claims(r["results"])) for r in family_runs]
    for i, (claim, _, _) in enumerate(table[0][1] if table else []):
        held = [seed for seed, cs in table if cs[i][1]]
        lines.append(f"- {claim}: {len(held)} of {len(table)} seeds"
                     + "".join(f"; seed {seed}: {cs[i][2]}" for seed, cs in table))
    ablations = [r for r in runs if r["kind"] == "ablation"]
    if ablations:
        lines += ["", "## Ablations of AVSlowFast (Table 5), as `dvc exp run -S` experiments", "",
                  "| setting | seeds | top-1 | " + " | ".join(groups) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in groups) + " |"]
        settings = list(dict.fromkeys(r["label"] for r in ablations))
        for label in settings:
            ms = [r["results"][r["member"]] for r in ablations if r["label"] == label]
            cells = [_spread([m["official"]["groups"][g]["top1"] for m in ms
                              if g in m["official"]["groups"]]) for g in groups]
            lines.append(f"| {label} | {len(ms)} | {_spread([m['top1'] for m in ms])} | " + " | ".join(cells) + " |")
    for note in experiments.get("notes", []):
        lines += ["", note]
    return lines
