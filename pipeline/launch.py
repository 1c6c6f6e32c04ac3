"""Run a stage's work through submitit: locally, on SLURM, or in-process for debugging.

A stage calls :func:`run_shards` with a picklable function and one argument per shard.
Each shard becomes one job (one task of a job array on SLURM; locally, at most the cores
over ``cpus_per_task`` run at once); past a thousand shards (SLURM's array limit), consecutive
shards share a job. The call blocks until
every job has finished, as DVC needs, and raises :class:`StageFailed` carrying the job's
own error when any job fails. A distributed stage (training) calls :func:`run_job`: one job
of ``nodes x tasks_per_node`` tasks, requeued by submitit when it is preempted or times
out, and re-attached to (not submitted again) when the stage is rerun while it still runs.
Such a job belongs to one run of the stage (:class:`RunClaim`): a job that is not the run's
owner (a requeue that outlived its run, a duplicate, a late start) must leave its outputs
alone. Ctrl-C of a stage cancels its jobs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.local.local import LocalJob
from tqdm import tqdm

from avsf.io.atomic import write_json
from avsf.io.machine import CPU_ISA_PINS
from pipeline.params import LaunchParams

log = logging.getLogger(__name__)

Shard = TypeVar("Shard")
Result = TypeVar("Result")


class StageFailed(RuntimeError):
    """A job of the stage failed; the message holds the job's id, log and error."""


@dataclass(frozen=True)
class Requeue:
    """For a checkpointable job: how long before its time limit SLURM (or the local
    executor) signals it, and how many time-outs it is requeued after."""

    signal_delay_s: int = 90
    max_requeues: int = 3


def stage_launch(launch: LaunchParams, *where: str) -> LaunchParams:
    """``launch`` with its logs under ``<log_dir>/<where...>`` (each dataset's and run's own,
    so that their jobs' records never meet)."""
    return launch.model_copy(update={"log_dir": str(Path(launch.log_dir, *where))})


def make_executor(stage: str, launch: LaunchParams, requeue: Requeue | None = None) -> submitit.Executor:
    """An executor for ``stage`` with the resources params give it."""
    folder = Path(launch.log_dir) / stage / "%j"
    cluster = None if launch.cluster == "auto" else launch.cluster
    limits = {} if requeue is None else {"slurm_max_num_timeout": requeue.max_requeues,
                                         "local_max_num_timeout": requeue.max_requeues}
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **limits)
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
    if requeue is not None:
        if executor.cluster == "slurm":
            executor.update_parameters(slurm_signal_delay_s=requeue.signal_delay_s)
        elif executor.cluster == "local":
            # The local executor reads it but AutoExecutor does not let it through.
            executor._executor.parameters["signal_delay_s"] = requeue.signal_delay_s
    if executor.cluster == "slurm":
        slurm = launch.slurm_for(stage)
        extra: dict[str, Any] = {"slurm_array_parallelism": slurm.array_parallelism}
        if slurm.partition:
            extra["slurm_partition"] = slurm.partition
        if slurm.account:
            extra["slurm_account"] = slurm.account
        if slurm.qos:
            extra["slurm_qos"] = slurm.qos
        if slurm.additional_parameters:
            extra["slurm_additional_parameters"] = dict(slurm.additional_parameters)
        pins = CPU_ISA_PINS[launch.cpu_isa]
        if pins:  # (also where sbatch passes no environment on: SBATCH_EXPORT=NONE)
            extra["slurm_setup"] = [f"export {k}={shlex.quote(v)}" for k, v in pins.items()]
        executor.update_parameters(**extra)
    return executor


@contextmanager
def job_environment(launch: LaunchParams, cluster: str) -> Iterator[None]:
    """While jobs are submitted, os.environ with launch.cpu_isa's pins of the math
    libraries (:data:`avsf.io.machine.CPU_ISA_PINS`): a local job's process and a SLURM job
    start with them, so they hold from the job's first torch import on. The debug executor
    runs jobs in this process, whose libraries may already have chosen their code: there
    the pins are not applied (jobs' metrics name the instruction set they used)."""
    pins = CPU_ISA_PINS[launch.cpu_isa]
    if not pins or cluster == "debug":
        if pins:
            log.warning("launch.cpu_isa %s is not applied to in-process (debug) jobs: this process's math "
                        "libraries keep the instruction set they chose", launch.cpu_isa)
        yield
        return
    before = {k: os.environ.get(k) for k in pins}
    os.environ.update(pins)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_shards(
    stage: str,
    fn: Callable[[Shard], Result],
    shards: Sequence[Shard],
    launch: LaunchParams,
    poll_s: float = 0.5,
) -> list[Result]:
    """Run ``fn(shard)`` for every shard as submitit jobs and return their results in order:
    one job per shard, or, past :func:`max_jobs`, consecutive shards together in that many jobs."""
    if not shards:
        return []
    executor = make_executor(stage, launch)
    limit = max_jobs(executor.cluster)
    groups = [list(shards[i * len(shards) // limit:(i + 1) * len(shards) // limit]) for i in range(limit)] \
        if len(shards) > limit else None
    if groups is not None:
        log.info("%s: %d shards in %d jobs (at most %d jobs a stage)", stage, len(shards), len(groups), limit)
        fn, shards = EachShard(fn), groups
    with job_environment(launch, executor.cluster):
        if executor.cluster == "local":
            jobs = _run_local(stage, executor, fn, shards, local_slots(launch, stage), poll_s)
        else:
            jobs = executor.map_array(fn, list(shards))
    if executor.cluster != "local":
        for job in jobs:
            log.info("%s: job %s on %s, log %s", stage, job.job_id, executor.cluster, job.paths.stdout)
        if executor.cluster != "debug":  # a debug job runs in-process when its result is asked for
            _wait_or_cancel(stage, jobs, poll_s)
    results = _collect(stage, jobs)
    return results if groups is None else [r for group in results for r in group]


# SLURM refuses a job array of MaxArraySize tasks or more (1001 by default, and a Kinetics decode
# is 8,000 shards); a thousand jobs also bound what the stages pay per job (a process, imports).
MAX_JOBS = 1000


def max_jobs(cluster: str) -> int:
    """The most jobs one call of :func:`run_shards` submits: MAX_JOBS, or fewer where SLURM's
    MaxArraySize (``scontrol show config``) says so."""
    if cluster != "slurm":
        return MAX_JOBS
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return MAX_JOBS
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return min(MAX_JOBS, int(found.group(1)) - 1) if found and int(found.group(1)) > 1 else MAX_JOBS


class EachShard:
    """A job's function over several shards: ``fn`` on each, in order (picklable, as ``fn`` is)."""

    def __init__(self, fn: Callable[[Shard], Result]):
        self.fn = fn

    def __call__(self, shards: list[Shard]) -> list[Result]:
        return [self.fn(shard) for shard in shards]


def local_slots(launch: LaunchParams, stage: str) -> int:
    """How many of a stage's local jobs run at once: the cores this process may use over each
    job's ``cpus_per_task``, at least 1. (submitit's local executor starts every job at once:
    a Kinetics-size decode is 8,000 shards, 8,000 processes of 260 MB each.)"""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // launch.resources_for(stage).cpus_per_task)


def _run_local(stage: str, executor: submitit.Executor, fn: Callable[[Shard], Result], shards: Sequence[Shard],
               slots: int, poll_s: float) -> list[submitit.Job]:
    """Submit ``fn(shard)`` as local jobs, at most ``slots`` running at a time, and wait for
    all of them; the jobs in shard order. Ctrl-C cancels the running ones and submits no more."""
    jobs: list[submitit.Job] = []
    running: list[submitit.Job] = []
    log.info("%s: %d jobs on local, at most %d at a time", stage, len(shards), slots)
    try:
        for shard in shards:
            while len(running) >= slots:
                time.sleep(poll_s)
                still = [job for job in running if not job.done()]
                if len(still) < len(running):
                    log.info("%s: %d/%d jobs finished", stage, len(jobs) - len(still), len(shards))
                running = still
            job = executor.submit(fn, shard)
            log.info("%s: job %s on local, log %s", stage, job.job_id, job.paths.stdout)
            jobs.append(job)
            running.append(job)
        _wait(stage, jobs, poll_s)
    except KeyboardInterrupt:
        for job in running:
            if not job.done():
                job.cancel(check=False)
        log.warning("%s: interrupted: cancelled job(s) %s; %d not started", stage,
                    ", ".join(str(j.job_id) for j in running), len(shards) - len(jobs))
        raise
    return jobs


def _collect(stage: str, jobs: Sequence[submitit.Job]) -> list[Any]:
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


def job_env() -> tuple[int, int, int]:
    """(tasks, global rank, local rank) of the submitit job this code runs in; (1, 0, 0) under
    the debug executor, which runs in-process, outside any job."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return 1, 0, 0
    return env.num_tasks, env.global_rank, env.local_rank


def set_job_threads(cpus: int, reserved: int = 0) -> int:
    """Set torch's intra-op threads for this job to its ``cpus`` less ``reserved`` (cores its
    DataLoader workers need), at least 1, or to OMP_NUM_THREADS when that is set; returns
    the number. An OpenMP team larger than the free cores stalls every op until its
    descheduled threads run again: a tiny model's forward measured 200 times slower with 2
    threads beside a busy process on 2 cores than with 1."""
    import torch

    preset = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(preset) if preset.isdigit() and int(preset) > 0 else max(1, cpus - reserved)
    torch.set_num_threads(threads)
    return threads


def job_progress(items: Iterable[Any] | None, desc: str, total: int | None = None, unit: str = "clip") -> tqdm:
    """A job's progress bar on stderr, updated every 10 s when stderr is the job's log file."""
    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 10.0)


def _wait_or_cancel(stage: str, jobs: Sequence[submitit.Job], poll_s: float) -> None:
    """:func:`_wait`; on Ctrl-C (or SIGTERM from DVC) cancel the jobs, then re-raise."""
    try:
        _wait(stage, jobs, poll_s)
    except KeyboardInterrupt:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        log.warning("%s: interrupted: cancelled job(s) %s", stage, ", ".join(str(j.job_id) for j in jobs))
        raise


# --------------------------------------------------------------------------- one long job


@dataclass(frozen=True)
class RunClaim:
    """Which run of a stage owns its outputs. The stage writes a fresh ``token`` into its
    attach file (``running.json``) before it submits the run's job, and hands the job this
    claim; the job is the run's owner while the file still holds its token. A rerun of the
    stage with other settings, or after the run finished (the stage then removes the file),
    takes the outputs over; a job of the earlier run that the scheduler still starts (a
    requeue that arrived as it finished, a duplicate, a late start) then sees that it is
    not the owner and must leave them alone."""

    path: str
    token: str

    def holder(self) -> dict[str, Any] | None:
        """The attach file's record (``run`` token, ``job_id``, ...), or None without one."""
        try:
            record = json.loads(Path(self.path).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def held(self) -> bool:
        return (self.holder() or {}).get("run") == self.token


def run_job(stage: str, fn: Callable[..., Result], launch: LaunchParams, attach_file: str | os.PathLike,
            fingerprint: str, requeue: Requeue | None = None, poll_s: float = 1.0, with_claim: bool = False) -> Result:
    """Run ``fn()`` as one job of ``nodes x tasks_per_node`` tasks and return its first task's
    result. While it runs, ``attach_file`` names it, its run's claim (:class:`RunClaim`;
    with ``with_claim`` the job is ``fn(claim)``, which checks it) and the ``fingerprint`` of
    what it computes: a rerun of the stage (after the stage was killed, say) with the same
    fingerprint waits for that job instead of submitting another; one with another
    fingerprint (other params) cancels it and submits its own. On SLURM a job requeued as
    it finished (its result is in, the scheduler holds it pending) is cancelled."""
    attach_file = Path(attach_file)
    job = _attached_job(stage, attach_file, fingerprint)
    if job is None:
        executor = make_executor(stage, launch, requeue)
        claim = RunClaim(str(attach_file), uuid.uuid4().hex)
        record = {"cluster": executor.cluster, "run": claim.token, "fingerprint": fingerprint, "job_id": None}
        write_json(attach_file, record)  # before the job exists: it checks the claim as it starts
        with job_environment(launch, executor.cluster):
            job = executor.submit(fn, claim) if with_claim else executor.submit(fn)
        write_json(attach_file, {**record, "job_id": str(job.job_id), "folder": str(job.paths.folder),
                                 "tasks": list(range(job.num_tasks))})
        log.info("%s: job %s on %s (%d task(s)), log %s", stage, job.job_id, executor.cluster, job.num_tasks,
                 job.paths.stdout)
    try:
        if not isinstance(job, submitit.DebugJob):
            _wait_or_cancel(stage, [job], poll_s)
        result = _collect(stage, [job])[0]
        if isinstance(job, submitit.SlurmJob):
            _cancel_requeued_leftover(stage, job.job_id)
        return result
    finally:
        if job.done():
            _release(attach_file, str(job.job_id))


def _release(attach_file: Path, job_id: str) -> None:
    """Remove ``attach_file`` if it still names ``job_id``: the run is over (a rerun of the
    stage that took over meanwhile keeps its own claim)."""
    try:
        record = json.loads(attach_file.read_text())
    except (OSError, ValueError):
        return
    if str(record.get("job_id")) == job_id:
        attach_file.unlink(missing_ok=True)


def slurm_job_state(job_id: str) -> str | None:
    """The controller's JobState of a SLURM job (RUNNING, PENDING, COMPLETING, ...), None
    when the controller does not know it (any more) or does not answer."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.stdout.split():
        if word.startswith("JobState="):
            return word.partition("=")[2]
    return None


def _cancel_requeued_leftover(stage: str, job_id: str, settle_s: float = 60.0) -> None:
    """Cancel a finished job that SLURM requeued (``scontrol requeue``, a preemption) in its
    last seconds: its result is in, and the pending leftover would otherwise start again
    later. A job still running or completing is waited for, up to ``settle_s``, until it
    leaves the queue or turns out requeued."""
    deadline = time.monotonic() + settle_s
    while (state := slurm_job_state(job_id)) in ("RUNNING", "COMPLETING", "CONFIGURING"):
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"):
        subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=60)
        log.warning("%s: job %s was requeued after it had finished (%s): cancelled the leftover", stage, job_id,
                    state)


class _AttachedLocalJob(LocalJob):
    """A local job submitted by an earlier run of the stage (this process did not start
    it): running while its controller process lives, cancelled with SIGINT as submitit does."""

    def get_info(self, mode: str = "force") -> dict[str, str]:  # noqa: ARG002 - submitit's signature
        if self.paths.result_pickle.exists():
            return {"jobState": "FINISHED"}
        return {"jobState": "RUNNING" if _alive(int(self.job_id)) else "INTERRUPTED"}

    def cancel(self, check: bool = True) -> None:  # noqa: ARG002
        if _alive(int(self.job_id)):
            os.kill(int(self.job_id), signal.SIGINT)


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"submitit" in cmdline


def _attached_job(stage: str, attach_file: Path, fingerprint: str) -> submitit.Job | None:
    """The job ``attach_file`` names, if it is still running (or pending) and computes what
    ``fingerprint`` says; a running job of other settings is cancelled."""
    try:
        record = json.loads(attach_file.read_text())
    except (OSError, ValueError):
        return None
    if not record.get("job_id"):  # the stage was stopped before its job was submitted: nothing to attach to
        return None
    folder, job_id, tasks = record["folder"], record["job_id"], tuple(record["tasks"])
    if record["cluster"] == "local":
        job: submitit.Job = _AttachedLocalJob(folder, job_id, tasks)
    elif record["cluster"] == "slurm":
        job = submitit.SlurmJob(folder, job_id, tasks)
    else:
        return None
    if job.done(force_check=True):
        attach_file.unlink(missing_ok=True)
        return None
    if record.get("fingerprint") != fingerprint:
        log.warning("%s: job %s still runs with other settings (fingerprint %s, now %s): cancelling it", stage,
                    job_id, record.get("fingerprint"), fingerprint)
        job.cancel(check=False)
        _wait_or_cancel(stage, [job], 0.5)
        attach_file.unlink(missing_ok=True)
        return None
    log.info("%s: re-attaching to job %s (%s), still running from an earlier run of the stage", stage, job_id,
             record["cluster"])
    return job


def _wait(stage: str, jobs: Sequence[submitit.Job], poll_s: float) -> None:
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
