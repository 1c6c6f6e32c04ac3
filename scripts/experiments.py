"""Every report's results over seeds, and AVSlowFast's Table 5 ablations, as `dvc exp run -S` experiments.

    python scripts/experiments.py [--seeds 0 1 2] [--reports kinetics epic ...] [--ablation-seeds 0]

Per seed K: ``dvc exp run -S train.seed=K``: every run that trains follows train.seed (train@,
finetune@, pretrain@, the probes' linear heads and random reference), so every training,
evaluation, probe and summary of the chosen reports runs again (with ``--reports`` a subset,
only the stages those reports' summaries need: ``dvc exp run ... summary@<report>``). Then for
each ablation, if K is an ablation seed and Kinetics is among the reports, ``dvc exp run -S
train.seed=K -S family.avslowfast.<key>=<value> evaluate@kinetics-avslowfast`` (only
train@avslowfast and its evaluation rerun). After each experiment every chosen report's results
are read from the workspace (pipeline.experiments.collect: each member's metrics, for ssl each
backbone's probe and each pretext's own figures) and the records so far are saved
(logs/experiments.json). At the end, or when a run fails, the workspace is brought back to the
committed params and outputs (``git checkout``, ``dvc checkout``) and each report's runs
finished so far go to reports/<report>/experiments.json; after the last run, ``dvc repro``
rewrites the summaries with them (after a failure, run it yourself if the partial record is
worth showing): mean and
min..max over the seeds, each claim's count of seeds where it holds, its mean difference and
standard error, and its verdict (pipeline/claims.py). Every experiment also stays in ``dvc exp
show``.

Run it on a built and committed demo (``make demo``, then commit): it refuses a tree with
uncommitted changes, which it would overwrite. A seed costs about as long as ``make demo``'s
training, pretraining, probes and evaluations; an ablation run about a tenth of that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.experiments import collect, new_record, report_names  # noqa: E402
from pipeline.layout import Layout  # noqa: E402
from pipeline.params import load_params  # noqa: E402

AV = "avslowfast"
ABLATIONS = (  # (label, changes to family.avslowfast): AVSlowFast Table 5's rows
    ("DropPathway off (P_d = 0)", {"drop_pathway": 0.0}),
    ("DropPathway 0.8, the paper's wording (the whole audio pathway dropped)", {"drop_pathway_mode": "pathway"}),
    ("AV-sync off", {"sync": False}),
    ("A->F->S fusion", {"fusion": "a_f_s"}),
    ("AV non-local fusion", {"fusion": "av_nonlocal"}),
)
DEFAULT_LABEL = "default: DropPathway 0.8 on the fusion (authors' code), AV-sync, A->FS"
PARTIAL = ROOT / "logs" / "experiments.json"


def sh(*cmd: str, capture: bool = False) -> str:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, capture_output=capture).stdout or ""


def ablation_sets(base, changes: dict) -> list[str]:
    """``dvc exp run -S`` values of one ablation of family.avslowfast: its changes, and where it
    turns AV-sync off, the self-supervised settings that pretrain that member on AV-sync
    deleted (params refuse them without it; no pretraining runs in a Kinetics ablation)."""
    sets = [f"family.{AV}.{k}={json.dumps(v)}" for k, v in changes.items()]
    if changes.get("sync", True) is False and base.ssl is not None:
        sets += [f"~ssl.settings.{name}" for name, s in base.ssl.settings.items()
                 if s.member == AV and "avs" in s.pretexts]
    return sets


def experiment(sets: list[str], targets: list[str], reports: list[str]) -> tuple[dict[str, dict], float]:
    """One ``dvc exp run`` of ``targets`` (none: the whole pipeline) from the committed params
    with ``sets``; each report's entry fields, read from the workspace."""
    sh("git", "checkout", "--", "params.yaml")
    started = time.monotonic()
    sh(sys.executable, "-m", "dvc", "exp", "run", *[a for s in sets for a in ("-S", s)], *targets)
    params = load_params(ROOT / "params.yaml")
    return {r: collect(params, r, ROOT) for r in reports}, time.monotonic() - started


def main() -> None:
    base = load_params(ROOT / "params.yaml")
    every = report_names(base)
    kinetics = every[0]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--reports", nargs="*", choices=every, default=every,
                        help=f"the reports to measure (default: all, {' '.join(every)})")
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0],
                        help=f"seeds of AVSlowFast's ablations on {kinetics} (with {kinetics} among the reports)")
    args = parser.parse_args()
    reports = [r for r in every if r in args.reports]
    if not reports or not args.seeds:
        sys.exit("experiments: name at least one report and one seed")
    if sh("git", "status", "--porcelain", "--untracked-files=no", capture=True).strip():
        sys.exit("experiments: commit or stash your changes first (each experiment resets params.yaml "
                 "and the end restores the committed outputs)")
    ablation_seeds = args.ablation_seeds if kinetics in reports else []
    if ablation_seeds and AV not in base.family:
        sys.exit(f"experiments: params.yaml's family has no {AV!r} member to ablate (--ablation-seeds with none)")
    targets = [] if reports == every else [f"summary@{r}" for r in reports]
    started = time.monotonic()
    command = " ".join(["python", "scripts/experiments.py", *sys.argv[1:]])
    records = {r: new_record(command) for r in reports}
    if kinetics in records:
        records[kinetics]["epochs"] = base.train.epochs

    def save(report: str, run: dict) -> None:
        records[report]["runs"].append(run)
        for record in records.values():
            record["seconds"] = round(time.monotonic() - started, 1)
        PARTIAL.parent.mkdir(parents=True, exist_ok=True)
        PARTIAL.write_text(json.dumps(records, indent=1) + "\n")

    try:
        for seed in args.seeds:
            sets = [f"train.seed={seed}"]
            entries, seconds = experiment(sets, targets, reports)
            for report in reports:
                save(report, {"kind": "seed", "seed": seed, "set": sets, **entries[report], "seconds": round(seconds, 1)})
            if seed not in ablation_seeds:
                continue
            av = entries[kinetics]["results"][AV]
            save(kinetics, {"kind": "ablation", "seed": seed, "label": DEFAULT_LABEL, "member": AV, "set": sets,
                            "results": {AV: av}, "seconds": 0.0})
            for label, changes in ABLATIONS:  # from this seed's workspace: only the AV member reruns
                sets = [f"train.seed={seed}", *ablation_sets(base, changes)]
                entries, seconds = experiment(sets, [f"evaluate@{kinetics}-{AV}"], [kinetics])
                save(kinetics, {"kind": "ablation", "seed": seed, "label": label, "member": AV, "set": sets,
                                "results": {AV: entries[kinetics]["results"][AV]}, "seconds": round(seconds, 1)})
    finally:  # back to the committed params and outputs, whatever happened, keeping the runs finished so far
        sh("git", "checkout", "--", "params.yaml", "dvc.lock", "reports")
        layout = Layout.of(base.layout)
        for report, record in records.items():
            if record["runs"]:
                (ROOT / layout.experiments(report)).write_text(json.dumps(record, indent=1) + "\n")
        sh(sys.executable, "-m", "dvc", "checkout", "--force")
    sh(sys.executable, "-m", "dvc", "repro")
    runs = sum(len(r["runs"]) for r in records.values())
    print(f"{runs} runs of {', '.join(records)} in {(time.monotonic() - started) / 60:.1f} min -> "
          + ", ".join(str(layout.experiments(r)) for r in records))


if __name__ == "__main__":
    main()
