"""Stage `train` as users run it, on the local executor: refused param combinations and
stores that do not match the params, the outputs, kill -9 then rerun (exact resume, no
debris of a killed write), a rerun that re-attaches to the running job, a requeue after
each stop signal, Ctrl-C, and two ranks with gloo (the global batch's curves)."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from avsf.data.store import read_meta
from avsf.io.atomic import TEMP_MARKER
from avsf.io.machine import cpu_description
from avsf.train import checkpoint as ckpt
from avsf.train.engine import drop_audio_draw
from pipeline.runs import pretrain_run
from pipeline.params import ParamsError, load_params
from process_group import kill_group_when, process_ended
from train_factory import (EPOCHS, assert_same_run, curve, job_logs, job_record, job_submitted, log_says,
                           project, run, stage_killed_job_held, start, task_pids, train_params, wait_for)

@pytest.fixture(scope="module")
def store(train_store) -> Path:
    return train_store


@pytest.fixture(scope="module")
def reference(train_reference) -> Path:
    """An uninterrupted run (conftest's, shared with tests/test_train_slurm.py)."""
    return train_reference


@pytest.mark.parametrize("overrides, message", [
    (["launch.stage_resources.train.tasks_per_node=3"],
     "train.batch_size: 4 does not split evenly over 3 ranks"),
    (["dataset.spec_frames=64", "model.arch=avslowfast"],
     "dataset.spec_frames: 64 log-mel frames, but the model's audio input is model.frames x alpha_a = 2 x 16 = 32"),
    (["model.mel_bins=40", "model.arch=audio"], "model.mel_bins: 40, but spectrogram.n_mels is 80"),
    (["model.stride=6"], "model.stride: 6 is not a multiple of the Fast pathway's alpha (4)"),
    (["launch.stage_resources.trian.mem_gb=4"], "launch.stage_resources: unknown stage 'trian'; stages: demo,"),
    (["launch.stage_slurm.trian.partition=gpu"], "launch.stage_slurm: unknown stage 'trian'"),
    (["launch.stage_resources.train.nodes=2"],
     "launch: stage_resources.train.nodes = 2 needs cluster slurm or auto (local runs on one node)"),
])
def test_impossible_combinations_are_refused_before_anything_runs(tmp_path, overrides, message):
    path, _ = train_params(tmp_path)
    with pytest.raises(ParamsError) as err:
        load_params(path, overrides)
    # named by the key the user set, not through a family member or a pretraining setting
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_sync_is_switched_off_for_a_plain_run_and_the_error_says_what_pretraining_needs(tmp_path):
    path, _ = train_params(tmp_path)
    with pytest.raises(ParamsError) as err:
        load_params(path, ["train.sync_weight=0"])
    assert str(err.value).startswith(f"{path}: train.sync_weight: 0 switches AV-sync off, but ssl.settings.avs "
                                     "pretrains on avs")
    assert "set ssl.train.sync_weight > 0" in str(err.value)
    params = load_params(path, ["train.sync_weight=0", "ssl.train.sync_weight=1"])
    assert params.train.sync_weight == 0 and pretrain_run(params, "avs").params.train.sync_weight == 1


def test_the_stage_exits_2_on_a_refused_combination_and_writes_nothing(tmp_path):
    train_params(tmp_path)
    done = run(tmp_path, "--set", "launch.stage_resources.train.tasks_per_node=3")
    assert done.returncode == 2 and "train.batch_size: 4 does not split" in done.stderr and done.stderr.startswith("error: params.yaml: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "stage.log"]


@pytest.mark.parametrize("overrides, key, ours, stored", [  # every key: tests/test_store_check.py
    (["decode.short_side=56"], "decode.short_side", "56", "40"),
    (["model.arch=audio", "spectrogram.n_mels=40", "model.mel_bins=40"], "spectrogram.n_mels", "40", "80"),
])
def test_params_that_do_not_match_the_store_are_refused_before_any_job(store, tmp_path, overrides, key, ours, stored):
    root = project(tmp_path, store, "mismatch")
    done = run(root, *(arg for o in overrides for arg in ("--set", o)))
    assert done.returncode == 2, done.stderr
    store_dir = "data/kinetics/store/logmel" if key.startswith("spectrogram") else "data/kinetics/store/frames"
    assert done.stderr == (f"error: {key}: {ours} in params, but the store {store_dir} was made with {stored} (set "
                           f"{key}={stored} to train on this store, or rebuild the store with these params)\n")
    assert sorted(p.name for p in root.iterdir()) == ["data", "params.yaml", "stage.log"]
    assert sorted(p.name for p in (root / "data").iterdir()) == ["kinetics"]
    assert sorted(p.name for p in (root / "data/kinetics").iterdir()) == ["store"]


def test_a_shard_missing_from_the_store_stops_the_stage_before_any_job(store, tmp_path):
    root = project(tmp_path, store, "no-shard")
    (root / "data/kinetics/store/frames/shard-00001.h5").unlink()  # 7 of the 14 clips
    done = run(root)
    assert done.returncode == 1
    assert done.stderr.startswith("error: train: the store lacks data/kinetics/store/frames/shard-00001.h5 (holds 7 clip(s) "
                                  "of the index, e.g. b07_"), done.stderr
    assert not (root / "logs").exists() and not (root / "data/kinetics/train/model").exists()


def test_a_run_writes_checkpoints_curves_metrics_and_an_empty_ledger(reference):
    out = reference / "data/kinetics/train/model"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003.pyth",
        "checkpoint_epoch_00004.pyth", "final.pyth", "last.pyth", "ledger.csv", "summary.json"]
    assert os.path.samefile(out / "last.pyth", out / "checkpoint_epoch_00004.pyth")
    metrics = json.loads((reference / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["epochs"] == EPOCHS and metrics["ranks"] == 1 and metrics["final"]["videos"] == 4
    assert metrics["load_failures"] == 0 and metrics["precise_bn_batches"] == 2
    # The machine that trained, as its job saw it, in both metrics files DVC reads (a string:
    # `dvc metrics diff` shows no change for it): pinned by launch.cpu_isa's default, avx2
    live = json.loads((reference / "reports/kinetics/train/model/metrics.json").read_text())
    assert live["machine"] == metrics["machine"] and metrics["machine"].startswith(cpu_description() + ", torch ")
    assert metrics["machine"].endswith(", math pinned to avx2")
    assert [s for s, _ in curve(reference, "steps", "loss")] == [str(s) for s in range(1, EPOCHS * 3 + 1)]
    assert [s for s, _ in curve(reference, "epochs", "val_top1")] == [str(e) for e in range(1, EPOCHS + 1)]
    assert (reference / "data/kinetics/train/model/ledger.csv").read_text().splitlines() == ["id,stage,reason,detail"]
    # The summary's copy beside final.pyth, from which a rerun after DVC removed it rewrites it.
    assert json.loads((out / "summary.json").read_text()) == metrics
    # The data record (avsf.predict reads new videos by it) is the store's
    data = torch.load(out / "final.pyth", weights_only=True)["data"]
    assert data["decode"] == read_meta(reference / "data/kinetics/store/frames/shard-00000.h5")["settings"] == {
        "fps": 30.0, "short_side": 40, "jpeg_quality": 90, "sample_rate": 16000}
    # A rerun with the same settings finds the finished run and trains nothing; what DVC
    # removes before it reruns a stage (the metrics it declares) comes back from the copy
    # beside final.pyth and from the curves.
    removed = [reference / "reports/kinetics/train/model/summary.json",
               reference / "reports/kinetics/train/model/metrics.json"]
    before = [p.read_text() for p in removed]
    for p in removed:
        p.unlink()
    listing = sorted(p.name for p in out.iterdir())
    plant_killed_writes(out)
    again = run(reference)
    # (found by the stage itself: no job is submitted for it)
    assert again.returncode == 0 and "already this run's result: nothing to train" in again.stderr
    assert "removed 3 temporary file(s)" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == listing
    assert [json.loads(p.read_text()) if p.suffix == ".json" else p.read_text() for p in removed] == [
        json.loads(t) if p.suffix == ".json" else t for p, t in zip(removed, before)]


def plant_killed_writes(out: Path) -> list[str]:
    """What checkpoint writes killed midway leave: avsf.io.atomic's temporaries of a process
    that is gone (the pid is above any real one)."""
    names = [".checkpoint_epoch_00002.tmp-99999999.pyth", ".final.tmp-99999999.pyth", ".last.tmp-99999999.pyth"]
    for name in names:
        (out / name).write_bytes(b"half a checkpoint")
    return names


def test_kill_9_of_the_stage_and_its_job_then_a_rerun_resumes_exactly(store, reference, tmp_path):
    root = project(tmp_path, store, "killed")
    out = root / "data/kinetics/train/model"
    proc = start(root)
    # the stage, submitit's controller and the task; the kill may fall inside a checkpoint's
    # write or between it and last.pyth's link
    left = kill_group_when(proc, lambda: (out / ckpt.epoch_checkpoint_name(1)).exists() and sorted(os.listdir(out)))
    assert ckpt.FINAL not in left
    killed_writes = [n for n in left if TEMP_MARKER in n]
    plant_killed_writes(out)
    done = run(root)
    assert done.returncode == 0, done.stderr
    logs = job_logs(root)
    assert re.search(r"train: resuming data/kinetics/train/model/(last|checkpoint_epoch_\d{5})\.pyth at epoch \d+ step 0",
                     logs), logs
    assert f"removed {3 + len(killed_writes)} temporary file(s)" in logs
    assert_same_run(root, reference)
    # DVC's output holds complete files only
    assert sorted(p.name for p in (root / "data/kinetics/train/model").iterdir()) == sorted(
        p.name for p in (reference / "data/kinetics/train/model").iterdir())


def test_a_rerun_while_the_job_runs_re_attaches_to_it(store, reference, tmp_path):
    root = project(tmp_path, store, "reattach")
    proc = start(root)
    wait_for(lambda: job_submitted(root), what="the job")
    job_id = job_record(root)["job_id"]
    with stage_killed_job_held(proc):  # the stage alone: its job keeps running
        rerun = start(root)
        wait_for(lambda: log_says(root, f"re-attaching to job {job_id}"), what="the re-attach")
    assert rerun.wait(timeout=240) == 0, (root / "stage.log").read_text()
    jobs = [p.name for p in (root / "logs/submitit/kinetics/model/train").iterdir() if p.is_dir() and p.name != "%j"]
    assert jobs == [job_id]  # ("%j" holds submitit's submission files)
    assert not (root / "logs/submitit/kinetics/model/train/running.json").exists()
    assert_same_run(root, reference)


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stop_signal_checkpoints_requeues_and_resumes_exactly(store, reference, tmp_path, signum):
    """USR2: what SLURM sends signal_delay_s before the time limit (submitit's signal);
    TERM: what a preemption or a requeue sends (USR1, what some clusters send instead, is
    the same stop: test_every_stop_signal_is_a_stop_request)."""
    root = project(tmp_path, store, f"requeued-{signum.name}")
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), what="epoch 1")
    controller = int(job_record(root)["job_id"])
    for pid in task_pids(controller):
        os.kill(pid, signum)
    assert proc.wait(timeout=240) == 0, (root / "stage.log").read_text()
    logs = job_logs(root)
    assert f"stop signal received ({signum.name}): checkpointing at the next step" in logs
    saved = re.search(r"holds the position to resume from, epoch (\d+) step (\d+)", logs)
    assert saved and f"resuming data/kinetics/train/model/last.pyth at epoch {saved[1]} step {saved[2]}" in logs
    assert "Requeued job" in logs
    resumed = json.loads((root / "reports/kinetics/train/model/summary.json").read_text())["resumed_from"]
    assert resumed is not None and resumed["epoch"] >= 1
    assert_same_run(root, reference)


def test_every_stop_signal_is_a_stop_request(monkeypatch):
    """Inside a submitit job (which has installed its own preemption handler) TERM, USR1
    and USR2 each ask the loop to stop at its next step."""
    from pipeline.train import _StopOnSignal

    handed_over = []
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        monkeypatch.setattr(signal, "getsignal", lambda s: lambda *args: handed_over.append(args))
        installed = {}
        monkeypatch.setattr(signal, "signal", lambda s, handler: installed.setdefault(s, handler))
        stop = _StopOnSignal()
        assert set(installed) == {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2} and not stop.requested()
        installed[signum](signum, None)
        assert stop.requested()
        stop.requeue()  # not on SLURM: submitit's own handler checkpoints and requeues
    assert [args[0] for args in handed_over] == [signal.SIGUSR2] * 3


def test_ctrl_c_cancels_the_job(store, tmp_path):
    # Long enough that the job cannot end by itself between its start and the Ctrl-C on an idle machine.
    root = project(tmp_path, store, "interrupted", {"train.epochs": 500})
    proc = start(root)
    wait_for(lambda: job_submitted(root), what="the job")
    controller = int(job_record(root)["job_id"])
    wait_for(lambda: bool(task_pids(controller)), what="the task")
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    wait_for(lambda: process_ended(controller), timeout=30, what="cancel")
    assert "interrupted: the stage's jobs were cancelled" in (root / "stage.log").read_text()


@pytest.fixture(scope="module")
def two_ranks(store, tmp_path_factory) -> Path:
    """An uninterrupted run on two gloo ranks."""
    root = project(tmp_path_factory.mktemp("two-ranks"), store, "run", {"launch.resources.tasks_per_node": 2})
    done = run(root)
    assert done.returncode == 0, done.stderr + job_logs(root)
    return root


def test_two_ranks_with_gloo_train_one_model(two_ranks):
    metrics = json.loads((two_ranks / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["ranks"] == 2 and metrics["steps"] == EPOCHS * 3  # 12 clips, 2 ranks x 2 per step: 3 steps
    assert metrics["last_epoch"]["ranks"] == 2 and metrics["last_epoch"]["rank_weight_spread"] == 0.0
    assert metrics["final"]["videos"] == 4  # the val set split over the ranks, counted once


def test_the_step_curves_of_two_ranks_are_the_global_batch_s_losses(store, tmp_path):
    """With BN statistics frozen and no dropout, a clip's losses do not depend on the other
    clips of its batch: two ranks' per-step curves (each rank half the global batch) are
    one rank's, sync loss included."""
    overrides = {"train.epochs": 1, "train.freeze_bn": True, "model.arch": "avslowfast"}
    one = project(tmp_path, store, "one-rank", overrides)
    two = project(tmp_path, store, "two-ranks", {**overrides, "launch.resources.tasks_per_node": 2})
    for root in (one, two):
        done = run(root)
        assert done.returncode == 0, done.stderr + job_logs(root)
    for name in ("loss", "sync_loss"):
        ours, theirs = ([float(v) for _, v in curve(root, "steps", name)] for root in (two, one))
        assert len(ours) == 3 and ours == pytest.approx(theirs, rel=1e-5, abs=1e-7), name


def test_a_signal_to_one_rank_stops_both_and_the_requeued_job_resumes_exactly(store, two_ranks, tmp_path):
    root = project(tmp_path, store, "two-ranks-requeued", {"launch.resources.tasks_per_node": 2})
    proc = start(root)
    wait_for(lambda: (root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1)).exists(), what="epoch 1")
    wait_for(lambda: len(task_pids(int(job_record(root)["job_id"]))) == 2, what="two tasks")
    os.kill(task_pids(int(job_record(root)["job_id"]))[1], signal.SIGUSR2)  # rank 1 only
    assert proc.wait(timeout=240) == 0, (root / "stage.log").read_text()
    assert "Requeued job" in job_logs(root)
    assert_same_run(root, two_ranks)


def test_a_rerun_with_other_params_cancels_the_running_job_and_starts_its_own(store, tmp_path):
    root = project(tmp_path, store, "reattach-other")
    proc = start(root)
    wait_for(lambda: job_submitted(root), what="the job")
    old = job_record(root)["job_id"]
    with stage_killed_job_held(proc):
        rerun = start(root, "--set", "train.epochs=2")
        wait_for(lambda: log_says(root, f"job {old} still runs with other settings"), what="the rerun")
    assert rerun.wait(timeout=240) == 0, (root / "stage.log").read_text()
    assert "cancelling it" in (root / "stage.log").read_text()
    assert process_ended(old)
    assert json.loads((root / "reports/kinetics/train/model/summary.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("mode", ["fusion", "pathway"])
def test_avslowfast_with_sync_and_drop_pathway_on_two_ranks(store, tmp_path, mode):
    """DropPathway drawn once per step for every rank, both of its behaviours under DDP (the
    paper's skips the audio pathway: DDP must not wait for its gradients), the sync loss
    and its curriculum."""
    root = project(tmp_path, store, f"av-{mode}", {
        "launch.resources.tasks_per_node": 2, "train.epochs": 2, "model.arch": "avslowfast",
        "model.drop_pathway": 0.5, "model.drop_pathway_mode": mode})
    done = run(root)
    assert done.returncode == 0, done.stderr + job_logs(root)
    metrics = json.loads((root / "reports/kinetics/train/model/summary.json").read_text())
    assert metrics["ranks"] == 2 and metrics["last_epoch"]["rank_weight_spread"] == 0.0
    data = torch.load(root / "data/kinetics/train/model/final.pyth", weights_only=True)["data"]  # the log-mel store's own settings
    stored = read_meta(root / "data/kinetics/store/logmel/shard-00000.h5")["settings"]
    assert data["spectrogram"] == {k: None if v == "none" else v for k, v in stored.items()
                                   if k not in ("sample_rate", "frames_per_second", "first_row_s")}
    assert data["spectrogram"]["f_max"] == 8000.0 and data["audio_stats"]["std"] > 0
    epochs = [float(v) for _, v in curve(root, "epochs", "hard_negative_fraction")]
    assert epochs == [0.0, 0.25]  # easy negatives only for the first half of training
    # DropPathway's draws: a function of (seed, epoch, step) alone, the same on both ranks
    # (the run stops when the ranks' counts differ).
    expected = [sum(drop_audio_draw(0, epoch, step, 0.5) for step in range(3)) / 3 for epoch in range(2)]
    assert [float(v) for _, v in curve(root, "epochs", "audio_dropped")] == pytest.approx(expected)
    sync = [float(v) for _, v in curve(root, "steps", "sync_loss")]
    if mode == "fusion":  # the audio pathway always runs: a sync loss every step
        assert all(v > 0 for v in sync)
    else:  # a dropped step runs no audio pathway, so it has no sync task
        assert any(v == 0 for v in sync) and any(v > 0 for v in sync)
