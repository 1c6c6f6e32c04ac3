"""The family over seeds, and AVSlowFast's Table 5 ablations, as `dvc exp run -S` experiments.

    python scripts/kinetics_experiments.py [--seeds 0 1 2] [--ablation-seeds 0 1 2]

Per seed K: ``dvc exp run -S train.seed=K`` (every family member is trained and evaluated
again). Per ablation and ablation seed K: ``dvc exp run -S train.seed=K -S
family.avslowfast.<key>=<value>`` (only train@avslowfast and evaluate@avslowfast rerun).
After each experiment its members' metrics are read from the workspace. At the end the
workspace is brought back to the committed params and outputs (``git checkout``, ``dvc
checkout``), the runs go to reports/kinetics/experiments.json, and ``dvc repro`` rewrites
reports/kinetics/summary.md with them (mean and min..max over seeds, claims per seed).
Every experiment also stays in ``dvc exp show``.

Run it on a built demo (``make demo`` first); it takes about as long as ``make demo``'s
training and evaluation per seed, and a quarter of that per ablation run.
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


def sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def member_results(params_path: Path) -> dict[str, dict]:
    params = load_params(params_path)
    out = {}
    for name in params.family:
        v = params.variant(name)
        path = Path(v.evaluate.out_dir) / "metrics.json"
        out[name] = {**json.loads((ROOT / path).read_text()), "arch": v.model.arch}
    return out


def experiment(sets: list[str]) -> tuple[dict[str, dict], float]:
    """One ``dvc exp run`` from the committed params with ``sets``; its members' metrics."""
    sh("git", "checkout", "--", "params.yaml")
    started = time.monotonic()
    sh(sys.executable, "-m", "dvc", "exp", "run", *[a for s in sets for a in ("-S", s)])
    return member_results(ROOT / "params.yaml"), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0, 1, 2])
    args = parser.parse_args()
    base = load_params(ROOT / "params.yaml")
    if AV not in base.family:
        sys.exit(f"params.yaml's family has no {AV!r} member to ablate")
    started = time.monotonic()
    runs = []
    for seed in args.seeds:
        results, seconds = experiment([f"train.seed={seed}"])
        runs.append({"kind": "seed", "seed": seed, "set": [f"train.seed={seed}"], "results": results,
                     "seconds": round(seconds, 1)})
        if seed in args.ablation_seeds:
            runs.append({"kind": "ablation", "seed": seed, "label": DEFAULT_LABEL, "member": AV,
                         "set": [f"train.seed={seed}"], "results": {AV: results[AV]}, "seconds": 0.0})
    for label, changes in ABLATIONS:
        for seed in args.ablation_seeds:
            sets = [f"train.seed={seed}", *(f"family.{AV}.{k}={json.dumps(v)}" for k, v in changes.items())]
            results, seconds = experiment(sets)
            runs.append({"kind": "ablation", "seed": seed, "label": label, "member": AV, "set": sets,
                         "results": {AV: results[AV]}, "seconds": round(seconds, 1)})
    record = {
        "command": " ".join(["python", "scripts/kinetics_experiments.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores",
        "date": datetime.date.today().isoformat(),
        "seconds": round(time.monotonic() - started, 1),
        "epochs": base.train.epochs,
        "runs": runs,
    }
    # Back to the committed params and outputs, then the summary with these runs.
    sh("git", "checkout", "--", "params.yaml", "dvc.lock", "reports")
    sh(sys.executable, "-m", "dvc", "checkout", "--force")
    out = ROOT / base.evaluate.out_dir / "experiments.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    sh(sys.executable, "-m", "dvc", "repro")
    print(f"{len(runs)} runs in {record['seconds'] / 60:.1f} min -> {out}")


if __name__ == "__main__":
    main()
