"""Stage `train` on the real local SLURM (scripts/slurm-local.sh): a 2-task gloo run on one
node whose ranks keep identical weights; a job requeued by its pre-timeout signal, or by
``scontrol requeue`` (SIGTERM, then SIGKILL after KillWait), that stops at the next step,
resumes from it and ends identical to an uninterrupted run; scancel, which ends the job
for good (SIGTERM too); and a requeue that arrives after the run finished, whose job must leave the
next run in the same folder alone."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import torch

from avsf.train import checkpoint as ckpt
from test_slurm import PARTITION, scontrol_job
from train_factory import (assert_same_run, curve, job_logs, job_record, job_submitted, project, run,
                           start, train_params, wait_for)

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(PARTITION is None, reason="no idle SLURM node")]

ON_SLURM = {"launch.cluster": "slurm", "launch.slurm.partition": PARTITION, "launch.resources.timeout_min": 5,
            "launch.resources.cpus_per_task": 1, "launch.resources.mem_gb": 1.5}


@pytest.fixture(scope="module")
def store(train_store):
    return train_store


def squeue(job_id: str) -> str:
    """'STATE REASON' of a queued job ('' once it has left the queue)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True)
    return out.stdout.strip()


def start_when_requeued(job_id: str) -> None:
    """SLURM holds a requeued job back for about two minutes (BeginTime); let it start now,
    though not within the second its first run was killed in: slurmd refuses a launch
    whose credential is not newer than the kill's revocation, to the second ("Job
    credential revoked"), and the job then fails."""
    wait_for(lambda: squeue(job_id).startswith("PENDING"), timeout=120, what="the requeue")
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)


@pytest.fixture(scope="module")
def reference(train_reference):
    """An uninterrupted run, on the local executor (conftest's): a run requeued on SLURM must
    end identical to it, whichever launcher ran it."""
    return train_reference


def fingerprint(path) -> str:
    return ckpt.read_record(path)["fingerprint"]


def test_two_tasks_on_one_node_are_two_gloo_ranks_in_step(store, tmp_path):
    root = project(tmp_path, store, "ddp", {**ON_SLURM, "launch.resources.tasks_per_node": 2, "train.epochs": 2})
    done = run(root)
    assert done.returncode == 0, done.stderr + job_logs(root)
    metrics = json.loads((root / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["ranks"] == 2 and metrics["last_epoch"]["rank_weight_spread"] == 0.0
    assert "on slurm (2 task(s))" in done.stderr


def test_a_requeued_job_resumes_and_ends_identical_to_an_uninterrupted_run(store, reference, tmp_path):
    root = project(tmp_path, store, "requeued", ON_SLURM)
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), timeout=180, what="epoch 1")
    job_id = job_record(root)["job_id"]
    # What SLURM sends signal_delay_s before the time limit (submitit asks for USR2).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    start_when_requeued(job_id)
    assert proc.wait(timeout=300) == 0, (root / "stage.log").read_text()
    logs = job_logs(root)
    assert "stop signal received (SIGUSR2): checkpointing at the next step" in logs and "Requeued job" in logs
    assert "resuming data/kinetics/train/model/last.pyth at epoch" in logs
    assert_same_run(root, reference)


def test_scontrol_requeue_stops_the_job_at_the_next_step_and_it_resumes_from_there(store, reference, tmp_path):
    """SIGTERM, SIGKILL KillWait later (5 s here), then the job pends again: it must save
    its position at the next step, not lose the epoch, and leave the requeue to SLURM."""
    root = project(tmp_path, store, "sigterm", ON_SLURM)
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), timeout=180, what="epoch 1")
    job_id = job_record(root)["job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    start_when_requeued(job_id)
    assert proc.wait(timeout=300) == 0, (root / "stage.log").read_text()
    logs = job_logs(root)
    assert "stop signal received (SIGTERM): checkpointing at the next step" in logs
    assert f"SLURM is ending job {job_id}" in logs
    saved = re.search(r"holds the position to resume from, epoch (\d+) step (\d+)", logs)
    assert saved and f"resuming data/kinetics/train/model/last.pyth at epoch {saved[1]} step {saved[2]}" in logs
    assert_same_run(root, reference)


def test_scancel_ends_the_job_and_is_not_turned_into_a_requeue(store, tmp_path):
    """scancel sends SIGTERM too; a requeue by the job itself would bring a cancelled job back."""
    root = project(tmp_path, store, "cancelled", ON_SLURM)
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), timeout=180, what="epoch 1")
    job_id = job_record(root)["job_id"]
    subprocess.run(["scancel", job_id], check=True)
    assert proc.wait(timeout=120) == 1
    wait_for(lambda: squeue(job_id) == "", timeout=60, what="the job to end")
    time.sleep(2)
    logs = job_logs(root)
    assert "stop signal received (SIGTERM)" in logs and "Requeued job" not in logs
    assert squeue(job_id) == "" and "JobState=CANCELLED" in scontrol_job(job_id)


def test_a_requeue_after_the_run_finished_leaves_the_next_run_in_its_folder_alone(store, tmp_path):
    """The job of a finished run is requeued (the requeue came after its step ended); it
    starts while a run with other settings trains in the same folder. It must not touch
    that run's checkpoints or curves."""
    root = project(tmp_path, store, "stray", {**ON_SLURM, "train.epochs": 2})
    assert run(root).returncode == 0
    old = next(p.name for p in (root / "logs/submitit/kinetics/model/train").iterdir() if p.name.isdigit())
    subprocess.run(["scontrol", "requeue", old], check=True)
    wait_for(lambda: squeue(old).startswith("PENDING"), timeout=60, what="the requeue")
    epochs = 8
    train_params(root, {**ON_SLURM, "train.epochs": epochs, "train.seed": 1})
    proc = start(root)
    wait_for(lambda: job_submitted(root), timeout=60, what="the new run's job")
    start_when_requeued(old)  # it starts as the new run trains (or, on a slow day, after it)
    wait_for(lambda: squeue(old) == "", timeout=180, what="the requeued job to end")
    assert proc.wait(timeout=300) == 0, (root / "stage.log").read_text()
    out = root / "data/kinetics/train/model"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [ckpt.epoch_checkpoint_name(e) for e in range(1, epochs + 1)] +
        [ckpt.FINAL, ckpt.LAST, "ledger.csv", "summary.json"])
    ours = fingerprint(out / ckpt.FINAL)
    assert all(fingerprint(out / ckpt.epoch_checkpoint_name(e)) == ours for e in range(1, epochs + 1))
    metrics = json.loads((root / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["fingerprint"] == ours and metrics["steps"] == epochs * 3
    assert [s for s, _ in curve(root, "steps", "loss")] == [str(s) for s in range(1, epochs * 3 + 1)]
    assert [s for s, _ in curve(root, "epochs", "top1")] == [str(e) for e in range(1, epochs + 1)]
    assert torch.load(out / ckpt.FINAL, weights_only=True)["epoch"] == epochs - 1
    stray = (root / f"logs/submitit/kinetics/model/train/{old}/{old}_0_log.err").read_text()
    assert "this job is not the owner of data/kinetics/train/model" in stray and "it leaves the outputs alone and exits" in stray
