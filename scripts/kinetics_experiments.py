"""The family over seeds, and AVSlowFast's Table 5 ablations, as `dvc exp run -S` experiments.

    python scripts/kinetics_experiments.py [--seeds 0 1 2] [--ablation-seeds 0]

Per seed K: ``dvc exp run -S train.seed=K`` (every family member is trained and evaluated
again), then for each ablation, if K is an ablation seed, ``dvc exp run -S train.seed=K -S
family.avslowfast.<key>=<value>`` (only train@avslowfast and evaluate@avslowfast rerun).
After each experiment its members' metrics are read from the workspace and the record so
far is saved (logs/kinetics_experiments.json). At the end, or when a run fails, the
workspace is brought back to the committed params and outputs (``git checkout``, ``dvc
checkout``); the runs go to reports/kinetics/experiments.json and ``dvc repro`` rewrites
reports/kinetics/summary.md with them (mean and min..max over seeds, claims per seed).
Every experiment also stays in ``dvc exp show``.

Run it on a built and committed demo (``make demo``, then commit): it refuses a tree with
uncommitted changes, which it would overwrite. A seed costs about as long as ``make demo``'s
training and evaluation; an ablation run about a third of that.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.layout import Layout  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.summary import member_results  # noqa: E402

AV = "avslowfast"
ABLATIONS = (  # (label, changes to family.avslowfast): AVSlowFast Table 5's rows
    ("DropPathway off (P_d = 0)", {"drop_pathway": 0.0}),
    ("DropPathway 0.8, the paper's wording (the whole audio pathway dropped)", {"drop_pathway_mode": "pathway"}),
    ("AV-sync off", {"sync": False}),
    ("A->F->S fusion", {"fusion": "a_f_s"}),
    ("AV non-local fusion", {"fusion": "av_nonlocal"}),
)
DEFAULT_LABEL = "default: DropPathway 0.8 on the fusion (authors' code), AV-sync, A->FS"
PARTIAL = ROOT / "logs" / "kinetics_experiments.json"


def sh(*cmd: str, capture: bool = False) -> str:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, capture_output=capture).stdout or ""


def experiment(sets: list[str]) -> tuple[dict[str, dict], float]:
    """One ``dvc exp run`` from the committed params with ``sets``; its members' metrics."""
    sh("git", "checkout", "--", "params.yaml")
    started = time.monotonic()
    sh(sys.executable, "-m", "dvc", "exp", "run", *[a for s in sets for a in ("-S", s)])
    return member_results(load_params(ROOT / "params.yaml"), "kinetics", ROOT), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0])
    args = parser.parse_args()
    if sh("git", "status", "--porcelain", "--untracked-files=no", capture=True).strip():
        sys.exit("kinetics_experiments: commit or stash your changes first (each experiment resets params.yaml "
                 "and the end restores the committed outputs)")
    base = load_params(ROOT / "params.yaml")
    if AV not in base.family:
        sys.exit(f"kinetics_experiments: params.yaml's family has no {AV!r} member to ablate")
    started = time.monotonic()
    record = {
        "command": " ".join(["python", "scripts/kinetics_experiments.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {sh('nproc', capture=True).strip()} cores",
        "date": datetime.date.today().isoformat(),
        "epochs": base.train.epochs,
        "seconds": 0.0,
        "runs": [],
    }

    def save(run: dict) -> None:
        record["runs"].append(run)
        record["seconds"] = round(time.monotonic() - started, 1)
        PARTIAL.parent.mkdir(parents=True, exist_ok=True)
        PARTIAL.write_text(json.dumps(record, indent=1) + "\n")

    try:
        for seed in args.seeds:
            results, seconds = experiment([f"train.seed={seed}"])
            save({"kind": "seed", "seed": seed, "set": [f"train.seed={seed}"], "results": results,
                  "seconds": round(seconds, 1)})
            if seed not in args.ablation_seeds:
                continue
            save({"kind": "ablation", "seed": seed, "label": DEFAULT_LABEL, "member": AV,
                  "set": [f"train.seed={seed}"], "results": {AV: results[AV]}, "seconds": 0.0})
            for label, changes in ABLATIONS:  # from this seed's workspace: only the AV member reruns
                sets = [f"train.seed={seed}", *(f"family.{AV}.{k}={json.dumps(v)}" for k, v in changes.items())]
                results, seconds = experiment(sets)
                save({"kind": "ablation", "seed": seed, "label": label, "member": AV, "set": sets,
                      "results": {AV: results[AV]}, "seconds": round(seconds, 1)})
    finally:  # back to the committed params and outputs, whatever happened
        sh("git", "checkout", "--", "params.yaml", "dvc.lock", "reports")
        sh(sys.executable, "-m", "dvc", "checkout", "--force")
    out = ROOT / Layout.of(base.layout).experiments("kinetics")
    out.write_text(json.dumps(record, indent=1) + "\n")
    sh(sys.executable, "-m", "dvc", "repro")
    print(f"{len(record['runs'])} runs in {record['seconds'] / 60:.1f} min -> {out}")


if __name__ == "__main__":
    main()
