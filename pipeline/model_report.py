"""The model report: parameters and multiply-adds per view of every preset, against the papers.

Writes ``<out_dir>/flops.json`` (DVC metrics) and ``<out_dir>/flops.md`` (the table for
people). Counting runs on the meta device, so the whole report takes seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from avsf.io.atomic import write_json, write_text
from avsf.models import HeadConfig, ModelConfig, build_model, model_config, preset
from avsf.models.config import PAPER_PRESETS
from avsf.models.flops import ModelCost, count_cost
from pipeline.launch import StageFailed
from pipeline.params import ModelParams, Params

log = logging.getLogger(__name__)


def config_from_params(p: ModelParams) -> ModelConfig:
    """params.yaml's ``model`` section as a library config."""
    return model_config(
        p.arch, p.depth, p.frames, p.stride, alpha_f=p.alpha_f, beta_f=p.beta_f, alpha_a=p.alpha_a,
        beta_a=p.beta_a, fusion=p.fusion, fusion_stages=tuple(p.fusion_stages), fusion_pool5=p.fusion_pool5,
        nonlocal_res4=p.nonlocal_res4, drop_pathway=p.drop_pathway, sync=p.sync, mel_bins=p.mel_bins,
        tiny=p.tiny,
        head=HeadConfig(kind=p.head, num_classes=p.num_classes, dropout=p.dropout,
                        activation="sigmoid" if p.head == "ava" else "softmax"),
    )


@dataclass(frozen=True)
class Check:
    """One paper figure at 256 x 256: ``must_match`` figures are the issue's acceptance list."""

    label: str
    preset: str
    overrides: dict = field(default_factory=dict)
    gmacs: float | None = None
    mparams: float | None = None
    source: str = ""
    must_match: bool = False
    note: str = ""  # why a figure cannot be met, when it cannot


FAST_NOTE = (
    "The paper is inconsistent here: Table 5a's SlowFast without laterals (pathways joined only "
    "at pool5) is 34.2 G = 27.3 (Slow) + 6.9 (Fast), and our no-lateral SlowFast gives 34.16 G, so "
    "the Fast pathway inside SlowFast costs 6.9 G, as ours does. Its parameters are 0.514 M "
    "backbone + 0.103 M for a 400-way classifier; the paper's 0.53 M is near the backbone alone.")
AV_NOTE = (
    "Within 2%. The paper's Table 6 implies a 2.3 G audio pathway and about 0.7 G per A->FS "
    "connection; with the connection as the authors' code describes it (mean over frequency, two "
    "kernel-5 temporal convs) a connection costs < 0.03 G, and the Table 1 audio pathway (width "
    "32, res3-res5 downsampling, 128x80 input) costs 3.03 G. Table A.1 lists the same model at 36.2 G.")
AFS_NOTE = (
    "The paper gives no design for A->F->S beyond 'subsampled to the Fast pathway's length and "
    "summed'; a summed connection costs almost nothing (ours), the paper's +11.6 G is unexplained.")
R101_AV_NOTE = "Table 3's 129 G is met with beta_A = 1 (audio width 64); with beta_A = 1/2 it is 113 G."
FUSION_COST_NOTE = (
    "Informational. Same cause as AVSlowFast 4x16: the paper charges each A->FS connection about "
    "0.7 G (0.4 G at res2), ours cost < 0.03 G, so rows that differ in connections differ by that.")

CHECKS = [
    Check("Slow-only 4x16 R50", "slow_r50_4x16", gmacs=27.3, mparams=32.4, source="SlowFast Tab. 5a",
          must_match=True),
    Check("Fast-only 4x16 R50", "fast_r50_4x16", gmacs=6.4, mparams=0.53, source="SlowFast Tab. 5a",
          must_match=True, note=FAST_NOTE),
    Check("SlowFast 4x16 R50", "slowfast_r50_4x16", gmacs=36.1, source="SlowFast Tab. 2, 5a", must_match=True),
    Check("SlowFast 4x16 R50, no laterals", "slowfast_r50_4x16", {"laterals": False}, gmacs=34.2,
          source="SlowFast Tab. 5a"),
    Check("SlowFast 8x8 R50", "slowfast_r50_8x8", gmacs=65.7, source="SlowFast Tab. 2", must_match=True),
    Check("SlowFast 8x8 R101", "slowfast_r101_8x8", gmacs=106.0, source="SlowFast Tab. 2", must_match=True),
    Check("SlowFast 16x8 R101", "slowfast_r101_16x8", gmacs=213.0, source="SlowFast Tab. 2", must_match=True),
    Check("SlowFast 16x8 R101+NL", "slowfast_r101_nl_16x8", gmacs=234.0, source="SlowFast Tab. 2",
          must_match=True),
    Check("AVSlowFast 4x16 R50", "avslowfast_r50_4x16", gmacs=39.8, source="AVSlowFast Tab. 5, 6",
          must_match=True, note=AV_NOTE),
    Check("AVSlowFast 4x16 R50, beta_A 1/8", "avslowfast_r50_4x16", {"beta_a": 1 / 8}, gmacs=36.0,
          source="AVSlowFast Tab. 5b"),
    Check("AVSlowFast 4x16 R50, beta_A 1/4", "avslowfast_r50_4x16", {"beta_a": 1 / 4}, gmacs=36.8,
          source="AVSlowFast Tab. 5b"),
    Check("AVSlowFast 4x16 R50, beta_A 1", "avslowfast_r50_4x16", {"beta_a": 1.0}, gmacs=51.9,
          source="AVSlowFast Tab. 5b", note=FUSION_COST_NOTE),
    Check("AVSlowFast 4x16 R50, pool5 fusion only", "avslowfast_r50_4x16", {"fusion_stages": ()},
          gmacs=38.4, source="AVSlowFast Tab. 6"),
    Check("AVSlowFast 4x16 R50, res4 + pool5", "avslowfast_r50_4x16", {"fusion_stages": (4,)},
          gmacs=39.1, source="AVSlowFast Tab. 6"),
    Check("AVSlowFast 4x16 R50, res2-4 + pool5", "avslowfast_r50_4x16", {"fusion_stages": (2, 3, 4)},
          gmacs=40.2, source="AVSlowFast Tab. 6", note=FUSION_COST_NOTE),
    Check("AVSlowFast 4x16 R50, A->F->S", "avslowfast_r50_4x16", {"fusion": "a_f_s"}, gmacs=51.4,
          source="AVSlowFast Tab. 5a", note=AFS_NOTE),
    Check("AVSlowFast 4x16 R50, AV Nonlocal", "avslowfast_r50_4x16", {"fusion": "av_nonlocal"}, gmacs=39.9,
          source="AVSlowFast Tab. 5a"),
    Check("AVSlowFast 8x8 R50 (pytorchvideo)", "avslowfast_r50_8x8", {"fusion_stages": (1, 2, 3, 4)},
          gmacs=68.6, source="pytorchvideo (fuses after stem, res2-res4)"),
    Check("AVSlowFast 8x8 R101", "slowfast_r101_8x8", {"arch": "avslowfast"}, gmacs=129.0,
          source="AVSlowFast Tab. 3", note=R101_AV_NOTE),
    Check("AVSlowFast 8x8 R101, beta_A 1", "slowfast_r101_8x8", {"arch": "avslowfast", "beta_a": 1.0},
          gmacs=129.0, source="AVSlowFast Tab. 3"),
]
AUDIO_ONLY_GMACS = 14.2  # AVSlowFast Table A.3, width not given
AUDIO_WIDTHS = (32, 48, 64, 66, 68, 69, 70, 72, 80, 96)


def _costs(cfg: ModelConfig, sizes) -> dict[int, ModelCost]:
    """{crop: ModelCost}, building the (meta) model once."""
    model = build_model(cfg, "meta")
    return {s: count_cost(cfg, s, model=model) for s in sorted(set(sizes))}


def _entry(costs: dict[int, ModelCost]) -> dict:
    """Parameters (the same at every crop) and multiply-adds per crop, rounded for the report."""
    first = next(iter(costs.values()))
    return {"params_m": round(first.mparams, 3), **{f"gmacs_{s}": round(c.gmacs, 2) for s, c in costs.items()}}


def _row(check: Check, tolerance: float, sizes: list[int]) -> dict:
    costs = _costs(preset(check.preset, **check.overrides), set(sizes) | {256})
    ours = costs[256]
    row = {"label": check.label, "preset": check.preset, "overrides": _jsonable(check.overrides),
           "source": check.source, "must_match": check.must_match, **_entry(costs)}
    errors = []
    if check.gmacs is not None:
        row["paper_gmacs"] = check.gmacs
        row["gmacs_rel_error"] = round(ours.gmacs / check.gmacs - 1, 4)
        errors.append(abs(row["gmacs_rel_error"]))
    if check.mparams is not None:
        row["paper_params_m"] = check.mparams
        row["params_rel_error"] = round(ours.mparams / check.mparams - 1, 4)
        errors.append(abs(row["params_rel_error"]))
    row["within_tolerance"] = all(e <= tolerance for e in errors)
    if check.note:
        row["note"] = check.note
    return row


def _jsonable(overrides: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}


def _audio_only(tolerance: float) -> dict:
    costs = {w: _costs(preset("audio_r50_4x16", audio_width=w), [256])[256] for w in AUDIO_WIDTHS}
    scan = {w: round(c.gmacs, 2) for w, c in costs.items()}
    best = min(scan, key=lambda w: abs(scan[w] / AUDIO_ONLY_GMACS - 1))
    within = [w for w, g in scan.items() if abs(g / AUDIO_ONLY_GMACS - 1) <= tolerance]
    cost = costs[best]
    return {
        "label": "Audio-only R50 (128x80 log-mel)", "preset": "audio_r50_4x16",
        "overrides": {"audio_width": best}, "params_m": round(cost.mparams, 3), "gmacs_256": cost.gmacs,
        "paper_gmacs": AUDIO_ONLY_GMACS, "gmacs_rel_error": round(cost.gmacs / AUDIO_ONLY_GMACS - 1, 4),
        "within_tolerance": bool(within), "must_match": True, "source": "AVSlowFast Tab. A.3",
        "width_scan_gmacs": scan,
        "note": (f"The paper does not give the width. Width {best} reproduces {AUDIO_ONLY_GMACS} G "
                 f"({scan[best]} G); widths within {tolerance:.0%}: {within}. The AVSlowFast audio "
                 f"pathway (width 32) is {scan[32]} G, beta_A = 1 (width 64) {scan[64]} G."),
    }


def run_model_report(params: Params) -> None:
    """Write parameters and multiply-adds per view of every model preset (at each of
    model_report.sizes) and of params.yaml's own model to model_report.out_dir, checked
    against the papers' figures at 256x256."""
    cfg = params.model_report
    started = time.monotonic()
    presets = {}
    for name in tqdm(PAPER_PRESETS, desc="presets", unit="model"):
        presets[name] = _entry(_costs(preset(name), cfg.sizes))
    configured = config_from_params(params.model)
    presets[f"params.yaml model ({configured.name})"] = _entry(_costs(configured, cfg.sizes))
    checks = [_row(c, cfg.tolerance, cfg.sizes) for c in tqdm(CHECKS, desc="paper checks", unit="model")]
    checks.append(_audio_only(cfg.tolerance))
    must = [c for c in checks if c["must_match"]]
    failed = [c["label"] for c in must if not c["within_tolerance"]]
    unexplained = [c["label"] for c in must if not c["within_tolerance"] and "note" not in c]
    summary = {"must_match": len(must), "within_tolerance": len(must) - len(failed),
               "explained_mismatches": failed, "tolerance": cfg.tolerance}
    out = Path(cfg.out_dir)
    write_json(out / "flops.json", {"presets": presets, "paper_checks": checks, "summary": summary})
    write_text(out / "flops.md", render_markdown(presets, checks, cfg.sizes))
    log.info("model report: %d presets, %d paper checks (%d/%d required within %.0f%%) in %.1f s -> %s",
             len(presets), len(checks), summary["within_tolerance"], len(must), cfg.tolerance * 100,
             time.monotonic() - started, out)
    if unexplained:  # a regression in the models, not a known inconsistency of the papers
        raise StageFailed(f"paper figures missed without an explanation: {', '.join(unexplained)}")


def render_markdown(presets: dict, checks: list[dict], sizes: list[int]) -> str:
    lines = ["# Model cost: multiply-adds per view (G) and parameters (M)", "",
             "Counted with torch.utils.flop_counter on the meta device, halved (the papers count "
             "multiply-adds). Parameters exclude the training-only AV-sync heads.", "",
             "## Against the papers (256 x 256)", "",
             "| model | ours G | paper G | error | ours M params | paper M | required | within |",
             "| --- | ---: | ---: | ---: | ---: | ---: | :---: | :---: |"]
    for c in checks:
        err = f"{c['gmacs_rel_error']:+.1%}" if "gmacs_rel_error" in c else ""
        lines.append(f"| {c['label']} | {c['gmacs_256']:.2f} | {c.get('paper_gmacs', '')} | {err} | "
                     f"{c['params_m']:.2f} | {c.get('paper_params_m', '')} | "
                     f"{'yes' if c['must_match'] else ''} | {'yes' if c['within_tolerance'] else 'NO'} |")
    lines += ["", "## Notes", ""]
    lines += [f"- **{c['label']}**: {c['note']}" for c in checks if "note" in c]
    lines += ["", "## Presets", "", "| preset | M params | " + " | ".join(f"G at {s}" for s in sizes) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in sizes) + " |"]
    for name, p in presets.items():
        lines.append(f"| {name} | {p['params_m']:.2f} | "
                     + " | ".join(f"{p[f'gmacs_{s}']:.2f}" for s in sizes) + " |")
    return "\n".join(lines) + "\n"
