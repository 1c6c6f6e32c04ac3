"""Job functions for the launcher tests (tests/test_launch.py, tests/test_slurm.py).

A local or SLURM job is a fresh python that unpickles its function by reference, so these
live in a module of their own that the job imports: ``job_can_import_tests`` puts this
directory on the jobs' PYTHONPATH (jobs inherit the submitting environment).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import submitit

from pipeline.launch import run_shards
from pipeline.params import Params

TESTS_DIR = Path(__file__).resolve().parent

# What a job reports about where and how it ran.
JOB_ENV_KEYS = (
    "SUBMITIT_LOCAL_TIMEOUT_S",  # the local executor's time limit, in seconds
    "CUDA_VISIBLE_DEVICES",  # the local executor's share of gpus_per_node
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_CPUS_PER_TASK",
    "SLURM_MEM_PER_NODE",
    "SLURM_JOB_PARTITION",
)


@pytest.fixture
def job_can_import_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let jobs (other processes) import this module, as they must to unpickle its functions."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), *([path] if path else [])]))


def square(shard: int) -> int:
    return shard * shard


def square_later_shards_first(shard: int) -> int:
    """Shard 0 finishes last, so results in shard order are not results in finishing order."""
    time.sleep(0.3 * (2 - shard))
    return shard * shard


def describe_job(shard: int) -> dict:
    """The shard, the process and submitit job it ran in, and the environment it was given."""
    return {
        "shard": shard,
        "pid": os.getpid(),
        "job_id": submitit.JobEnvironment().job_id,
        "rank": submitit.JobEnvironment().global_rank,
        **{key: os.environ.get(key) for key in JOB_ENV_KEYS},
    }


def timed_sleep(shard: tuple[str, int]) -> tuple[float, float]:
    """Sleeps 0.5 s; returns when it started and ended (wall clock), to tell which jobs overlapped."""
    started = time.time()
    time.sleep(0.5)
    return started, time.time()


def fail_on_shard_one(shard: int) -> int:
    if shard == 1:
        raise ValueError(f"shard {shard} is broken: no frames in clip_{shard}.mp4")
    return shard


def fail_on_rank_one(shard: int) -> int:
    """Fails in the second task of a job of several tasks (as one rank of distributed training)."""
    rank = submitit.JobEnvironment().global_rank
    if rank == 1:
        raise RuntimeError(f"rank {rank} of shard {shard} lost its peers")
    return shard


def report_claim(claim) -> tuple[bool, str]:
    """Whether the job holds the run's claim it was given (pipeline.launch.RunClaim), and its token."""
    return claim.held(), claim.token


def requeue_myself_then_finish(claim) -> str:  # noqa: ARG001
    """Asks SLURM to requeue this job and returns within SLURM's KillWait: the requeue of a
    job in its last seconds (the result is in, the job is held pending all the same)."""
    job_id = os.environ["SLURM_JOB_ID"]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    time.sleep(1.0)
    return job_id


def die_without_a_word(shard: int) -> int:
    """Killed outside python, as the OOM killer would: the job leaves no result behind."""
    os.kill(os.getpid(), signal.SIGKILL)
    return shard


def square_stage(params: Params) -> None:
    """Test stage: square three shards."""
    run_shards("square", square, [0, 1, 2], params.launch)


def failing_stage(params: Params) -> None:
    """Test stage: three shards, the second of which fails."""
    run_shards("failing", fail_on_shard_one, [0, 1, 2], params.launch)


def train_steps(shard: int) -> dict:
    """Two training steps of a tiny AVSlowFast (forward and backward, the sync loss, SGD with
    momentum) on fixed random inputs, on one thread: the instruction set torch's kernels ran
    at, the math pins the job was given, and a digest of the weights it ends with."""
    import hashlib

    import torch
    import torch.nn.functional as F

    from avsf.io.machine import PIN_VARIABLES
    from avsf.models import build_model, example_inputs, model_config
    from avsf.models.network import to_channels_last
    from avsf.models.sync import sync_loss

    torch.set_num_threads(1)
    torch.manual_seed(shard)
    cfg = model_config("avslowfast", 50, 2, 8, tiny=True)
    model = to_channels_last(build_model(cfg)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    inputs = [to_channels_last(x) if x.dim() == 5 else x for x in example_inputs(cfg, crop=32, batch=4)]
    negative, labels = torch.randn_like(inputs[2]), torch.arange(4) % cfg.head.num_classes
    for step in range(2):
        logits, levels = model(inputs, drop_audio=False, negative_audio=negative)
        loss = F.cross_entropy(logits, labels) + sync_loss(levels, torch.ones(4, dtype=torch.bool), cfg.sync.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
    return {"isa": torch.backends.cpu.get_cpu_capability(), "digest": digest.hexdigest(),
            "pins": {k: os.environ[k] for k in PIN_VARIABLES if k in os.environ}}
