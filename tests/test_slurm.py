"""pipeline.launch on a real SLURM (scripts/slurm-local.sh starts one on localhost).

Skipped unless `sinfo` answers with an idle node. Jobs ask for 1 cpu and 512 MB each so
that the three tasks of an array fit side by side on a small machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import submitit

from _jobs import (
    describe_job,
    die_without_a_word,
    fail_on_shard_one,
    job_can_import_tests,  # noqa: F401  (fixture)
    requeue_myself_then_finish,
    square_later_shards_first,
)
from pipeline.launch import StageFailed, make_executor, run_job, run_shards
from pipeline.params import LaunchParams


def _idle_partition() -> str | None:
    """The partition of an idle SLURM node, or None when SLURM does not answer."""
    if shutil.which("sinfo") is None:
        return None
    try:
        # scontrol ping fails at once when the controller is down; sinfo would retry for 10 s.
        if subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode != 0:
            return None
        out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines():
        partition, state = line.split()
        if state in ("idle", "mix"):
            return partition.rstrip("*")
    return None


PARTITION = _idle_partition()

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(PARTITION is None, reason="no idle SLURM node (make slurm-local starts one)"),
    pytest.mark.usefixtures("job_can_import_tests"),
]


def launch(tmp_path: Path, cluster: str = "slurm", slurm: dict | None = None, **fields) -> LaunchParams:
    fields.setdefault("resources", {"timeout_min": 5, "cpus_per_task": 1, "mem_gb": 0.5})
    return LaunchParams(
        cluster=cluster,
        log_dir=str(tmp_path / "logs"),
        slurm={"partition": PARTITION, **(slurm or {})},
        **fields,
    )


def submission_file(tmp_path: Path, stage: str) -> str:
    """The sbatch script submitit wrote for the stage's one array job."""
    scripts = list((tmp_path / "logs" / stage).glob("*/*_submission.sh"))
    assert len(scripts) == 1, scripts
    return scripts[0].read_text()


def scontrol_job(job_id: str) -> str:
    """What the controller knows of a job (it keeps finished jobs for MinJobAge, 300 s)."""
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


def test_three_shards_run_as_one_job_array_and_return_in_shard_order(tmp_path):
    results = run_shards("square", square_later_shards_first, [0, 1, 2], launch(tmp_path))
    assert results == [0, 1, 4]
    assert "#SBATCH --array=0-2%" in submission_file(tmp_path, "square")


def test_each_shard_is_one_task_of_the_array_with_its_resources(tmp_path):
    jobs = run_shards("probe", describe_job, [10, 11, 12], launch(tmp_path))
    assert [job["shard"] for job in jobs] == [10, 11, 12]
    assert len({job["SLURM_ARRAY_JOB_ID"] for job in jobs}) == 1
    assert [job["SLURM_ARRAY_TASK_ID"] for job in jobs] == ["0", "1", "2"]
    assert [job["job_id"] for job in jobs] == [f"{jobs[0]['SLURM_ARRAY_JOB_ID']}_{i}" for i in range(3)]
    for job in jobs:
        assert job["SLURM_CPUS_PER_TASK"] == "1"
        assert job["SLURM_MEM_PER_NODE"] == "512"
        assert job["SLURM_JOB_PARTITION"] == PARTITION


def test_per_stage_resources_and_timeout_reach_slurm(tmp_path):
    params = launch(tmp_path, stage_resources={"decode": {"timeout_min": 7, "mem_gb": 1.0}})
    job, = run_shards("decode", describe_job, [0], params)
    assert job["SLURM_MEM_PER_NODE"] == "1024"
    assert "TimeLimit=00:07:00" in scontrol_job(job["SLURM_JOB_ID"])


def test_a_failing_job_fails_the_stage_with_its_own_error(tmp_path):
    with pytest.raises(StageFailed) as failed:
        run_shards("decode", fail_on_shard_one, [0, 1, 2], launch(tmp_path))
    message = str(failed.value)
    assert message.startswith("decode: 1 of 3 jobs failed")
    assert "ValueError: shard 1 is broken: no frames in clip_1.mp4" in message
    assert "_1 (log " in message  # the array task that failed, and where its log is


def test_a_job_killed_outside_python_fails_the_stage_instead_of_hanging_it(tmp_path, monkeypatch):
    """No result file is ever written: the stage learns the job's end from SLURM (sacct)."""
    # submitit then waits 15 s for a result file that a slow shared filesystem may not show
    # yet; here the file system is local: 2 s.
    monkeypatch.setattr(submitit.Job, "_results_timeout_s", 2)
    with pytest.raises(StageFailed) as failed:
        run_shards("decode", die_without_a_word, [0], launch(tmp_path))
    assert "has not produced any output (state: FAILED)" in str(failed.value)


def test_array_parallelism_and_additional_parameters_reach_sbatch(tmp_path):
    params = launch(
        tmp_path,
        slurm={"array_parallelism": 2, "additional_parameters": {"comment": "avsf-test", "nice": 5}},
    )
    jobs = run_shards("probe", describe_job, [0, 1, 2], params)
    sbatch = submission_file(tmp_path, "probe").splitlines()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --comment=avsf-test", "#SBATCH --nice=5",
                 f"#SBATCH --partition={PARTITION}", "#SBATCH --time=5", "#SBATCH --cpus-per-task=1"):
        assert line in sbatch
    # ...and SLURM applied them.
    job = scontrol_job(jobs[0]["SLURM_ARRAY_JOB_ID"])
    assert "ArrayTaskThrottle=2" in job
    assert "Comment=avsf-test" in job
    assert "Nice=5" in job


def test_per_stage_slurm_settings_reach_only_their_stage(tmp_path):
    """A GPU partition for training and a CPU one for decoding: here both are the one
    partition there is, and the per-stage sbatch arguments show where each setting went."""
    params = launch(tmp_path, slurm={"additional_parameters": {"comment": "everyone"}},
                    stage_slurm={"train": {"partition": PARTITION, "additional_parameters": {"nice": 7}}})
    run_shards("train", describe_job, [0], params)
    run_shards("decode", describe_job, [0], params)
    train, decode = (submission_file(tmp_path, stage).splitlines() for stage in ("train", "decode"))
    assert "#SBATCH --nice=7" in train and "#SBATCH --comment=everyone" in train
    assert "#SBATCH --comment=everyone" in decode and not any("--nice" in line for line in decode)


def test_auto_picks_slurm_when_slurm_is_up(tmp_path):
    params = launch(tmp_path, cluster="auto")
    assert make_executor("probe", params).cluster == "slurm"
    job, = run_shards("probe", describe_job, [0], params)
    assert job["SLURM_JOB_ID"] == job["job_id"]  # a single shard is a plain job, not an array


def test_a_job_requeued_as_it_finishes_is_cancelled_once_its_result_is_in(tmp_path):
    """``scontrol requeue`` (or a preemption) in a job's last seconds: its result is in, but
    SLURM holds it pending; left there it would start again later."""
    attach = tmp_path / "running.json"
    job_id = run_job("probe", requeue_myself_then_finish, launch(tmp_path), attach, "fp", with_claim=True)
    assert not attach.exists()
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    assert out.stdout.strip() == "", f"job {job_id} still queued: {out.stdout}"
    assert "JobState=CANCELLED" in scontrol_job(job_id) and "Restarts=1" in scontrol_job(job_id)
