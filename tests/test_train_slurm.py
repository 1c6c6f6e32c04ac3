"""Stage `train` on the real local SLURM (scripts/slurm-local.sh): a 2-task gloo run on one
node whose ranks keep identical weights, and a job requeued by its preemption signal that
resumes and ends identical to an uninterrupted run."""

from __future__ import annotations

import json
import subprocess

import pytest

from avsf.train import checkpoint as ckpt
from test_slurm import PARTITION
from train_factory import assert_same_run, job_logs, job_record, make_store, project, run, start, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(PARTITION is None, reason="no idle SLURM node")]

ON_SLURM = {"launch.cluster": "slurm", "launch.slurm.partition": PARTITION, "launch.resources.timeout_min": 5,
            "launch.resources.cpus_per_task": 1, "launch.resources.mem_gb": 1.5}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-store")
    make_store(root)
    return root / "data" / "kinetics" / "store"


def squeue(job_id: str) -> str:
    """'STATE REASON' of a queued job ('' once it has left the queue)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True)
    return out.stdout.strip()


def start_when_requeued(job_id: str) -> None:
    """SLURM holds a requeued job back for about two minutes (BeginTime); let it start now."""
    wait_for(lambda: squeue(job_id).startswith("PENDING"), timeout=120, what="the requeue")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)


def test_two_tasks_on_one_node_are_two_gloo_ranks_in_step(store, tmp_path):
    root = project(tmp_path, store, "ddp", {**ON_SLURM, "launch.resources.tasks_per_node": 2, "train.epochs": 2})
    done = run(root)
    assert done.returncode == 0, done.stderr + job_logs(root)
    metrics = json.loads((root / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["ranks"] == 2 and metrics["last_epoch"]["rank_weight_spread"] == 0.0
    assert "on slurm (2 task(s))" in done.stderr


def test_a_requeued_job_resumes_and_ends_identical_to_an_uninterrupted_run(store, tmp_path):
    reference = project(tmp_path, store, "reference", ON_SLURM)
    assert run(reference).returncode == 0
    root = project(tmp_path, store, "requeued", ON_SLURM)
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), timeout=180, what="epoch 1")
    job_id = job_record(root)["job_id"]
    # What SLURM sends signal_delay_s before the time limit (submitit asks for USR2).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    start_when_requeued(job_id)
    assert proc.wait(timeout=300) == 0, (root / "stage.log").read_text()
    logs = job_logs(root)
    assert "stop signal received: checkpointing at the next step" in logs and "Requeued job" in logs
    assert "resuming data/kinetics/train/model/last.pyth at epoch" in logs
    assert_same_run(root, reference)
