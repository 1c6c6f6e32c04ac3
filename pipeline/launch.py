"""Run a stage's work through submitit: locally, on SLURM, or in-process for debugging.

A stage calls :func:`run_shards` with a picklable function and one argument per shard.
Each shard becomes one job (one task of a job array on SLURM). The call blocks until
every job has finished, as DVC needs, and raises :class:`StageFailed` carrying the job's
own error when any job fails.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import submitit
from tqdm import tqdm
from submitit.core.utils import FailedJobError, UncompletedJobError

from pipeline.params import LaunchParams

log = logging.getLogger(__name__)

Shard = TypeVar("Shard")
Result = TypeVar("Result")


class StageFailed(RuntimeError):
    """A job of the stage failed; the message holds the job's id, log and error."""


def make_executor(stage: str, launch: LaunchParams) -> submitit.Executor:
    """An executor for ``stage`` with the resources params give it."""
    folder = Path(launch.log_dir) / stage / "%j"
    cluster = None if launch.cluster == "auto" else launch.cluster
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    res = launch.resources_for(stage)
    executor.update_parameters(
        name=f"avsf-{stage}",
        timeout_min=res.timeout_min,
        nodes=res.nodes,
        tasks_per_node=res.tasks_per_node,
        gpus_per_node=res.gpus_per_node,
        cpus_per_task=res.cpus_per_task,
        mem_gb=res.mem_gb,
    )
    if executor.cluster == "slurm":
        slurm = launch.slurm
        extra: dict[str, Any] = {"slurm_array_parallelism": slurm.array_parallelism}
        if slurm.partition:
            extra["slurm_partition"] = slurm.partition
        if slurm.account:
            extra["slurm_account"] = slurm.account
        if slurm.qos:
            extra["slurm_qos"] = slurm.qos
        if slurm.additional_parameters:
            extra["slurm_additional_parameters"] = dict(slurm.additional_parameters)
        executor.update_parameters(**extra)
    return executor


def run_shards(
    stage: str,
    fn: Callable[[Shard], Result],
    shards: Sequence[Shard],
    launch: LaunchParams,
    poll_s: float = 0.5,
) -> list[Result]:
    """Run ``fn(shard)`` for every shard as submitit jobs and return their results in order."""
    if not shards:
        return []
    executor = make_executor(stage, launch)
    jobs = executor.map_array(fn, list(shards))
    for job in jobs:
        log.info("%s: job %s on %s, log %s", stage, job.job_id, executor.cluster, job.paths.stdout)
    if executor.cluster != "debug":  # a debug job runs in-process when its result is asked for
        _wait(stage, jobs, poll_s)
    results, failures = [], []
    for job in jobs:
        try:
            # Every task must succeed; a job of several tasks (nodes, tasks_per_node, as in
            # distributed training) reports its first task's result.
            results.append(job.results()[0])
        except (FailedJobError, UncompletedJobError) as exc:  # the job's traceback, as text
            failures.append(f"job {job.job_id} (log {job.paths.stderr}) failed: {exc}")
        except Exception as exc:  # the debug executor re-raises the job's own exception
            failures.append(f"job {job.job_id} failed: {type(exc).__name__}: {exc}")
    if failures:
        raise StageFailed(f"{stage}: {len(failures)} of {len(jobs)} jobs failed\n" + "\n".join(failures))
    return results


def job_progress(items: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "clip") -> tqdm:
    """A job's progress bar on stderr, updated every 10 s when stderr is the job's log file."""
    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 10.0)


def _wait(stage: str, jobs: list[submitit.Job], poll_s: float) -> None:
    """Block until every job is done, logging progress when the count of finished jobs changes."""
    finished = -1
    while True:
        done = sum(job.done() for job in jobs)
        if done != finished:
            finished = done
            log.info("%s: %d/%d jobs finished", stage, done, len(jobs))
        if done == len(jobs):
            return
        time.sleep(poll_s)
