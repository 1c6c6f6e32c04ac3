"""pipeline.launch with submitit's local (subprocess) and debug (in-process) executors, and the
stage CLI's exit code when a job fails. SLURM itself is covered by tests/test_slurm.py."""

from __future__ import annotations

import os
import pdb
import subprocess
import sys
from pathlib import Path

import pytest

from _jobs import (
    describe_job,
    fail_on_rank_one,
    fail_on_shard_one,
    job_can_import_tests,  # noqa: F401  (fixture)
    report_claim,
    square,
    square_later_shards_first,
    timed_sleep,
)
from conftest import write_params
import pipeline.launch
from pipeline.launch import StageFailed, local_slots, make_executor, max_jobs, run_job, run_shards
from pipeline.params import LaunchParams

pytestmark = pytest.mark.usefixtures("job_can_import_tests")


def launch(tmp_path: Path, cluster: str, **fields) -> LaunchParams:
    fields.setdefault("resources", {"timeout_min": 5, "cpus_per_task": 1, "mem_gb": 1})
    return LaunchParams(cluster=cluster, log_dir=str(tmp_path / "logs"), **fields)


@pytest.fixture
def no_pdb(monkeypatch: pytest.MonkeyPatch) -> list:
    """The debug executor opens pdb on a failed job; record that instead of reading stdin."""
    opened: list = []
    monkeypatch.setattr(pdb, "post_mortem", lambda *args: opened.append(args))
    return opened


def test_local_results_come_back_in_shard_order(tmp_path):
    results = run_shards("square", square_later_shards_first, [0, 1, 2], launch(tmp_path, "local"))
    assert results == [0, 1, 4]


def test_local_runs_one_job_per_shard_each_in_its_own_process(tmp_path):
    jobs = run_shards("probe", describe_job, [10, 11, 12], launch(tmp_path, "local"))
    assert [job["shard"] for job in jobs] == [10, 11, 12]
    pids = {job["pid"] for job in jobs}
    assert len(pids) == 3 and os.getpid() not in pids
    job_ids = [job["job_id"] for job in jobs]
    assert len(set(job_ids)) == 3
    # Each job logs under <log_dir>/<stage>/<job id>/.
    for job_id in job_ids:
        assert list((tmp_path / "logs" / "probe" / job_id).glob("*_log.out"))


def test_local_runs_at_most_cores_over_cpus_per_task_jobs_at_once(tmp_path):
    """submitit's local executor would start every shard's job at once (a Kinetics-size decode:
    8,000 processes); the stage keeps cores // cpus_per_task of them running."""
    cores = len(os.sched_getaffinity(0))
    one_at_a_time = launch(tmp_path, "local", resources={"timeout_min": 5, "cpus_per_task": cores, "mem_gb": 1})
    assert local_slots(one_at_a_time, "probe") == 1
    spans = run_shards("probe", timed_sleep, [("a", i) for i in range(3)], one_at_a_time)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # in order, never side by side
    assert local_slots(launch(tmp_path, "local"), "probe") == cores  # (cpus_per_task 1)
    assert local_slots(launch(tmp_path, "local", stage_resources={"decode": {"cpus_per_task": 2}}),
                       "decode") == max(1, cores // 2)


def test_past_the_job_limit_consecutive_shards_share_a_job(tmp_path, monkeypatch):
    """SLURM refuses an array of MaxArraySize tasks or more (1001 by default; a Kinetics decode
    is 8,000 shards): past the limit, shards are grouped into that many jobs, results in order."""
    monkeypatch.setattr(pipeline.launch, "MAX_JOBS", 2)
    jobs = run_shards("probe", describe_job, [10, 11, 12, 13, 14], launch(tmp_path, "local"))
    assert [job["shard"] for job in jobs] == [10, 11, 12, 13, 14]
    pids = [job["pid"] for job in jobs]
    assert pids[0] == pids[1] and pids[2] == pids[3] == pids[4] and pids[0] != pids[2]


def test_the_job_limit_follows_slurms_max_array_size(monkeypatch):
    assert max_jobs("local") == max_jobs("debug") == 1000
    config = subprocess.CompletedProcess([], 0, "ClusterName = c\nMaxArraySize            = 300\nMaxJobCount = 1\n", "")
    monkeypatch.setattr(pipeline.launch.subprocess, "run", lambda *args, **kwargs: config)
    assert max_jobs("slurm") == 299
    config.stdout = "MaxArraySize = 40000\n"
    assert max_jobs("slurm") == 1000


def test_no_shards_submit_nothing(tmp_path):
    assert run_shards("square", square, [], launch(tmp_path, "local")) == []
    assert not (tmp_path / "logs").exists()


def test_local_job_error_fails_the_stage_with_its_own_message(tmp_path):
    with pytest.raises(StageFailed) as failed:
        run_shards("decode", fail_on_shard_one, [0, 1, 2], launch(tmp_path, "local"))
    message = str(failed.value)
    assert message.startswith("decode: 1 of 3 jobs failed")
    assert "ValueError: shard 1 is broken: no frames in clip_1.mp4" in message
    # It names the failed job's error log, which holds the same error.
    log = Path(message.split("(log ", 1)[1].split(")", 1)[0])
    assert log.is_file() and "shard 1 is broken" in log.read_text()


def test_local_timeout_min_reaches_the_job(tmp_path):
    """submitit's local executor would kill a job after 2 minutes without timeout_min."""
    default = run_shards("probe", describe_job, [0], launch(tmp_path, "local", resources={}))
    assert default[0]["SUBMITIT_LOCAL_TIMEOUT_S"] == str(60 * LaunchParams().resources.timeout_min)
    set_ = run_shards("probe", describe_job, [0], launch(tmp_path, "local", resources={"timeout_min": 7}))
    assert set_[0]["SUBMITIT_LOCAL_TIMEOUT_S"] == "420"


def test_local_per_stage_resources_reach_only_their_stage(tmp_path):
    params = launch(
        tmp_path,
        "local",
        resources={"timeout_min": 5},
        stage_resources={"train": {"timeout_min": 9, "gpus_per_node": 2}},
    )
    train, = run_shards("train", describe_job, [0], params)
    assert train["SUBMITIT_LOCAL_TIMEOUT_S"] == "540"
    assert train["CUDA_VISIBLE_DEVICES"] == "0,1"  # the local executor's share of gpus_per_node
    other, = run_shards("decode", describe_job, [0], params)
    assert other["SUBMITIT_LOCAL_TIMEOUT_S"] == "300"
    assert other["CUDA_VISIBLE_DEVICES"] == ""


def test_a_job_of_several_tasks_returns_its_first_task_result(tmp_path):
    params = launch(tmp_path, "local", resources={"timeout_min": 5, "tasks_per_node": 2})
    jobs = run_shards("train", describe_job, [0, 1], params)
    assert [(job["shard"], job["rank"]) for job in jobs] == [(0, 0), (1, 0)]
    # ...and both tasks of each job ran.
    for job in jobs:
        assert len(list((tmp_path / "logs" / "train" / job["job_id"]).glob("*_result.pkl"))) == 2


def test_a_failing_task_fails_its_job(tmp_path):
    params = launch(tmp_path, "local", resources={"timeout_min": 5, "tasks_per_node": 2})
    with pytest.raises(StageFailed) as failed:
        run_shards("train", fail_on_rank_one, [7], params)
    assert "RuntimeError: rank 1 of shard 7 lost its peers" in str(failed.value)


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_a_job_holds_its_runs_claim_while_it_runs_and_the_claim_ends_with_the_run(tmp_path, cluster):
    attach = tmp_path / "logs" / "running.json"
    held, token = run_job("train", report_claim, launch(tmp_path, cluster), attach, "fp", with_claim=True)
    assert held and len(token) == 32
    assert not attach.exists()  # a job of this run that the scheduler would still start owns nothing


def test_make_executor_takes_resources_from_params(tmp_path):
    params = launch(
        tmp_path,
        "local",
        resources={"timeout_min": 5, "cpus_per_task": 1},
        stage_resources={"train": {"timeout_min": 30, "tasks_per_node": 2}},
    )
    executor = make_executor("train", params)
    assert executor.cluster == "local"
    assert executor._executor.parameters["timeout_min"] == 30
    assert executor._executor.parameters["tasks_per_node"] == 2
    assert executor.folder == tmp_path / "logs" / "train" / "%j"


def test_debug_runs_jobs_in_process_in_shard_order(tmp_path):
    jobs = run_shards("probe", describe_job, [2, 0, 1], launch(tmp_path, "debug"))
    assert [job["shard"] for job in jobs] == [2, 0, 1]
    assert {job["pid"] for job in jobs} == {os.getpid()}
    assert len({job["job_id"] for job in jobs}) == 3


def test_debug_job_error_fails_the_stage_once_with_its_own_message(tmp_path, no_pdb):
    with pytest.raises(StageFailed) as failed:
        run_shards("decode", fail_on_shard_one, [0, 1, 2], launch(tmp_path, "debug"))
    message = str(failed.value)
    assert message.startswith("decode: 1 of 3 jobs failed")
    assert "ValueError: shard 1 is broken: no frames in clip_1.mp4" in message
    assert len(no_pdb) == 1  # pdb is offered once: the failed job ran once


# --------------------------------------------------------------------------- stage CLI

STAGE_SCRIPT = """\
from pipeline.cli import stage_command
from _jobs import {function}
main = stage_command({function})
if __name__ == "__main__":
    main()
"""


def run_test_stage(function: str, tmp_path: Path, *args: str):
    script = tmp_path / f"{function}.py"
    script.write_text(STAGE_SCRIPT.format(function=function))
    params = write_params(tmp_path / "params.yaml", {"launch.log_dir": str(tmp_path / "logs")})
    return subprocess.run(
        [sys.executable, str(script), "--params", str(params), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


def test_stage_exits_0_and_says_where_each_job_log_is(tmp_path):
    done = run_test_stage("square_stage", tmp_path, "--set", "launch.cluster=local")
    assert done.returncode == 0, done.stderr
    logs = sorted((tmp_path / "logs" / "square").glob("*/*_log.out"))
    assert len(logs) == 3
    for log in logs:
        assert str(log) in done.stderr
    assert "square: 3/3 jobs finished" in done.stderr


def test_stage_exits_1_with_the_job_error_on_stderr_when_a_job_fails(tmp_path):
    failed = run_test_stage("failing_stage", tmp_path)
    assert failed.returncode == 1
    assert "error: failing: 1 of 3 jobs failed" in failed.stderr
    assert "ValueError: shard 1 is broken: no frames in clip_1.mp4" in failed.stderr
    assert "Traceback" in failed.stderr  # the job's own traceback, not the launcher's
    assert "StageFailed" not in failed.stderr
