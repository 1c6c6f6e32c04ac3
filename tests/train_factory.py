"""A tiny store and tiny training params for the training tests.

Two classes told apart by picture and sound (a low tone on a dark frame, a high tone on a
bright one), 12 training and 4 validation clips of 2 s, frames stored at short side 40, a
tiny model at 32 x 32: a few training steps cost well under a second. Batches of 4 split
12 clips evenly, on one rank or two: 3 steps an epoch whether the last batch is dropped or not.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from avsf.train import checkpoint as ckpt

from clip_factory import ClipSpec, build_store
from pipeline.params import Params, load_params

from conftest import REPO, write_params

SPECS = [ClipSpec(f"{'ab'[i % 2]}{i:02d}", seconds=2.0, size=(48, 40), noise=0.02, label="ab"[i % 2],
                  tone_hz=(300.0, 1500.0)[i % 2], split="val" if i >= 12 else "train") for i in range(16)]

STORE_OVERRIDES = {"decode.short_side": 40, "decode.clips_per_shard": 7}  # the store's (the stage checks them)

TRAIN_OVERRIDES = {
    **STORE_OVERRIDES,
    "launch.cluster": "local",
    "launch.resources.timeout_min": 10,
    "launch.resources.cpus_per_task": 1,
    "model.arch": "slowfast",
    "model.tiny": True,
    "model.frames": 2,
    "model.stride": 8,
    "model.num_classes": 2,
    "model.dropout": 0.0,
    "dataset.train_scale": [32, 40],
    "dataset.train_crop": 32,
    "dataset.test_scale": 32,
    "dataset.test_crop": 32,
    "dataset.spec_frames": 32,  # frames x alpha_a = 2 x 16
    "train.epochs": 2,
    "train.batch_size": 4,
    "train.workers": 0,
    "train.persistent_workers": False,
    "train.base_lr": 0.05,
    "train.reference_batch": 4,
    "train.warmup_epochs": 0.5,
    "train.warmup_start_lr": 0.01,
    "train.precise_bn_batches": 2,
    "train.val_every": 1,
    "train.log_every": 1,
    "train.keep_checkpoints": 0,
}


def make_store(root: Path) -> None:
    build_store(root, SPECS, STORE_OVERRIDES)


def train_params(root: Path, overrides: dict | None = None) -> tuple[Path, Params]:
    path = write_params(root / "params.yaml", {**TRAIN_OVERRIDES, **(overrides or {})})
    return path, load_params(path)


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- running the stage

EPOCHS = 4  # 3 steps each: long enough to interrupt after the first checkpoint


def project(tmp_path: Path, store: Path, name: str, overrides: dict | None = None) -> Path:
    root = tmp_path / name
    shutil.copytree(store, root / "data" / "kinetics" / "store")
    train_params(root, {"train.epochs": EPOCHS, **(overrides or {})})
    return root


def start(root: Path, *args: str) -> subprocess.Popen:
    log = (root / "stage.log").open("a")
    return subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py"), *args], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def run(root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout)
    (root / "stage.log").open("a").write(done.stdout + done.stderr)
    return done


@contextmanager
def stage_killed_job_held(proc: subprocess.Popen):
    """SIGKILL the stage alone while its local job (submitit's controller and task, in the
    stage's process group) is held stopped, and let the job go on when the block ends: the job
    is then still running when a rerun of the stage looks for it, however slow the rerun is
    to start on a loaded machine (a free job of a few seconds could end before that)."""
    os.killpg(proc.pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGCONT)


def log_says(root: Path, text: str) -> bool:
    return text in (root / "stage.log").read_text()


def wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def job_record(root: Path) -> dict:
    return json.loads((root / "logs/submitit/kinetics/model/train/running.json").read_text())


def job_submitted(root: Path) -> bool:
    """Whether the stage's job is submitted: running.json names it (the stage writes the
    run's claim there first, before the job exists)."""
    try:
        return bool(job_record(root)["job_id"])
    except (OSError, ValueError, KeyError):
        return False


def job_logs(root: Path) -> str:
    return "".join(p.read_text() for p in (root / "logs/submitit/kinetics/model/train").glob("*/*_log.err"))


def curve(root: Path, kind: str, name: str) -> list[tuple[str, str]]:
    with (root / "reports/kinetics/train/model/plots/metrics" / kind / f"{name}.tsv").open() as f:
        return [(row["step"], row[name]) for row in csv.DictReader(f, delimiter="\t")]


def assert_same_run(root: Path, reference: Path) -> None:
    assert same_weights(model_weights(root / "data/kinetics/train/model" / ckpt.FINAL),
                        model_weights(reference / "data/kinetics/train/model" / ckpt.FINAL))
    ours, theirs = (json.loads((r / "reports/kinetics/train/model/summary.json").read_text()) for r in (root, reference))
    assert ours["final"] == theirs["final"] and ours["steps"] == theirs["steps"] == EPOCHS * 3
    for kind, name in (("steps", "loss"), ("steps", "lr"), ("epochs", "top1"), ("epochs", "val_top1")):
        assert curve(root, kind, name) == curve(reference, kind, name), (kind, name)


def task_pids(controller: int) -> list[int]:
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return [int(c) for c in children]




# --------------------------------------------------------------------------- two ranks in-process


def precise_bn_rank(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank of the precise-BN test: its own batches, then the statistics it ends with."""
    import torch.distributed as dist
    from torch import nn

    from avsf.train.precise_bn import update_bn_stats

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    bn = nn.BatchNorm1d(3)
    batches = [torch.full((4, 3), 10.0 * rank + i) + torch.arange(4.0)[:, None] for i in range(2)]
    update_bn_stats(bn, iter(batches), lambda x: bn(x), limit=2)
    torch.save({"mean": bn.running_mean, "var": bn.running_var}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
