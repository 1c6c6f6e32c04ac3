"""The training engine in-process: the recipe, the sampler, exact resume from any step,
the NaN stop, samples that fail to load (counted as samples), a job that is not its run's
owner, precise BN and the checkpoint format."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from torch import nn

from avsf.models import build_model
from avsf.models.checkpoint import load_pyslowfast_checkpoint
from avsf.models.serialize import config_from_dict
from avsf.train import checkpoint as ckpt
from avsf.train.engine import RunSuperseded, TooManyLoadFailures, TrainingDiverged, drop_audio_draw
from avsf.train.precise_bn import update_bn_stats
from avsf.train.recipe import LRSchedule, build_optimizer, hard_negative_fraction
from avsf.train.sampler import EpochSampler
from pipeline.runs import pretrain_run, training_run
from pipeline.launch import RunClaim
from pipeline.train import TrainJob
from train_factory import model_weights, precise_bn_rank, same_weights, train_params


# --------------------------------------------------------------------------- recipe


def test_learning_rate_warms_up_linearly_then_follows_the_half_cosine():
    s = LRSchedule(base_lr=1.6, reference_batch=1024, global_batch=64, epochs=196, warmup_epochs=34,
                   warmup_start_lr=0.16)
    assert s(0) == pytest.approx(0.01)  # PySlowFast's 0.01 at batch 64
    peak = 0.1 * (1 + math.cos(math.pi * 34 / 196)) / 2
    assert s(17) == pytest.approx(0.01 + (peak - 0.01) / 2)
    assert s(34) == pytest.approx(peak)
    assert s(98) == pytest.approx(0.05)  # half way: half the base LR of 0.1 at batch 64
    assert s(196) == pytest.approx(0.0, abs=1e-12)


def test_an_absolute_warm_up_start_is_the_lr_itself_at_any_batch():
    """AVSlowFast A.8: warm-up "from 0.001" while the reference LR is 1.6 @ 1024: at batch 64
    (base 0.1) the first LR is still 0.001, not 0.001 x 64 / 1024; the steps policy after it."""
    recipe = dict(base_lr=1.6, reference_batch=1024, epochs=120, policy="steps", warmup_epochs=10,
                  warmup_start_lr=0.001, steps=(80, 100, 110))
    for batch in (1024, 64, 8):
        s = LRSchedule(global_batch=batch, warmup_start_absolute=True, **recipe)
        base = 1.6 * batch / 1024
        assert [s(e) for e in (0, 5, 10, 80, 100, 110)] == pytest.approx(
            [0.001, 0.001 + (base - 0.001) / 2, base, base / 10, base / 100, base / 1000])
    scaled = LRSchedule(global_batch=64, warmup_start_absolute=False, **recipe)
    assert scaled(0) == pytest.approx(0.001 / 16)  # a value at the reference batch, scaled as base_lr
    from conftest import REPO
    from pipeline.params import load_params

    ssl = pretrain_run(load_params(REPO / "params.yaml"), "avs_rotation").params.train
    assert (ssl.warmup_start_lr, ssl.warmup_start_absolute) == (0.001, True)


def test_step_policy_and_the_curriculum():
    s = LRSchedule(base_lr=0.01, reference_batch=32, global_batch=32, epochs=30, policy="steps",
                   warmup_epochs=1, warmup_start_lr=0.001, steps=(20, 25), gamma=0.1)
    assert [s(e) for e in (0, 0.5, 1, 19.9, 20, 25, 29)] == pytest.approx(
        [0.001, 0.0055, 0.01, 0.01, 0.001, 0.0001, 0.0001])
    assert [hard_negative_fraction(p) for p in (0.0, 0.49, 0.5, 0.9)] == [0.0, 0.0, 0.25, 0.25]


def test_no_weight_decay_on_batch_norm_and_nesterov_as_an_option():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, lr=0.1, weight_decay=1e-4, nesterov=True)
    decay = {g["name"]: (g["weight_decay"], len(g["params"])) for g in opt.param_groups}
    assert decay == {"weights": (1e-4, 4), "norm": (0.0, 2)}
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert not build_optimizer(model, lr=0.1).defaults["nesterov"]


def test_sampler_deals_one_permutation_to_every_rank_and_resumes_mid_epoch():
    ranks = [EpochSampler(10, batch_size=2, seed=3, rank=r, world_size=2, drop_last=False) for r in range(2)]
    for s in ranks:
        s.set_epoch(5)
    keys = [list(s) for s in ranks]
    assert [len(k) for k in keys] == [6, 6] and ranks[0].batches_per_epoch == 3  # 10 padded to 12
    indices = [k.index for part in keys for k in part]
    assert set(indices) == set(range(10))
    seeds = [k.seed for part in keys for k in part]
    assert len(set(seeds)) == 12  # every position its own seed, the padding included
    again = EpochSampler(10, batch_size=2, seed=3, rank=1, world_size=2, drop_last=False)
    again.set_epoch(5, start_batch=2)
    assert list(again) == keys[1][4:]
    again.set_epoch(6)
    assert [k.index for k in again] != [k.index for k in keys[1]]  # reshuffled every epoch


@pytest.mark.parametrize(("size", "world", "batch", "dropped", "wrapped"), [
    (10, 2, 2, 2, 3),  # 5 per rank: 2 whole batches; wrapped, 12 positions: 3
    (10, 1, 4, 2, 3),
    (15, 4, 2, 2, 2),  # PySlowFast's DistributedSampler pads 15 to 16: 4 per rank, 2 batches
    (17, 4, 2, 2, 3),  # 5 per rank: 2 batches, one sample of each rank left for another epoch
    (3, 2, 4, 1, 1),  # less than a batch per rank: one batch, wrapped around, rather than none
])
def test_training_drops_the_last_incomplete_batch_as_pyslowfast(size, world, batch, dropped, wrapped):
    """drop_last (the default, PySlowFast's training loader): ceil(size / world) // batch whole
    batches per rank; drop_last=False: the permutation wraps around to fill the last one."""
    for drop_last, batches in ((True, dropped), (False, wrapped)):
        ranks = [EpochSampler(size, batch, seed=1, rank=r, world_size=world, drop_last=drop_last)
                 for r in range(world)]
        keys = [list(s) for s in ranks]
        assert [s.batches_per_epoch for s in ranks] == [batches] * world
        assert [len(k) for k in keys] == [batches * batch] * world
        taken = batches * batch * world  # the first positions of the epoch's permutation, wrapped
        assert len({k.index for part in keys for k in part}) == min(taken, size)


# --------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def store(train_store) -> Path:
    return train_store


def run_dir(tmp_path: Path, store: Path, overrides: dict | None = None, name: str = "run"):
    root = tmp_path / name
    shutil.copytree(store, root / "data" / "kinetics" / "store")
    path, params = train_params(root, overrides)
    return root, params


def trainer_for(root: Path, params, monkeypatch, should_stop=None):
    monkeypatch.chdir(root)
    trainer = TrainJob(training_run(params), "fp")._trainer(0, 1, 0, _Stop(should_stop))
    trainer.resume(ckpt.resume_point(root / "data/kinetics/train/model"))  # as pipeline.train's job
    return trainer


class _Stop:
    def __init__(self, when):
        self.when = when

    def requested(self) -> bool:
        return bool(self.when and self.when())


def strip_timing(history):
    timing = ("epoch_seconds", "clips_per_s", "data_wait_fraction")
    return [{k: v for k, v in row.items() if k not in timing} for row in history]


def test_a_run_stopped_mid_epoch_resumes_to_identical_weights_and_metrics(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, name="straight")
    straight = trainer_for(root, params, monkeypatch).run()
    reference = model_weights(root / "data/kinetics/train/model" / ckpt.FINAL)

    root, params = run_dir(tmp_path, store, name="stopped")
    first = trainer_for(root, params, monkeypatch)
    first.should_stop = lambda: first.global_step == 3  # in epoch 2 of 2 (3 steps per epoch)
    stopped = first.run()
    assert stopped.preempted and stopped.global_step == 4
    assert (root / "data/kinetics/train/model/checkpoint_epoch_00001_step_000001.pyth").is_file()
    # as a job killed between the checkpoint's write and the link of last.pyth leaves it
    ckpt.link_last(root / "data/kinetics/train/model", root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1))
    resumed_trainer = trainer_for(root, params, monkeypatch)  # a new process would build it afresh
    assert (resumed_trainer.start_epoch, resumed_trainer.start_step) == (1, 1)
    assert os.path.samefile(root / "data/kinetics/train/model" / ckpt.LAST,  # linked as the killed job would have
                            root / "data/kinetics/train/model/checkpoint_epoch_00001_step_000001.pyth")
    resumed = resumed_trainer.run()
    assert resumed.resumed_from == {"epoch": 1, "step": 1}
    assert same_weights(model_weights(root / "data/kinetics/train/model" / ckpt.FINAL), reference)
    assert strip_timing(resumed.history) == strip_timing(straight.history)
    assert resumed.final == straight.final
    assert not list((root / "data/kinetics/train/model").glob("*_step_*.pyth"))  # the mid-epoch point is gone


def test_the_resume_point_is_the_checkpoint_furthest_on(tmp_path):
    """last.pyth, unless a checkpoint further on was written after it (a job killed before
    it linked last.pyth there); where links fail, last.pyth is a copy and its record says
    where it stands."""
    def write(name, epoch, step=0):
        return ckpt.save_checkpoint(tmp_path / name, {"avsf": {"fingerprint": "f", "next_epoch": epoch,
                                                                "next_step": step}})

    assert ckpt.resume_point(tmp_path) is None
    first = write(ckpt.epoch_checkpoint_name(1), 1)
    assert ckpt.resume_point(tmp_path) == first  # killed before any link
    ckpt.link_last(tmp_path, first)
    assert ckpt.resume_point(tmp_path) == tmp_path / ckpt.LAST
    mid = write("checkpoint_epoch_00001_step_000002.pyth", 1, 2)
    assert ckpt.resume_point(tmp_path) == mid
    ckpt.link_last(tmp_path, mid)
    assert ckpt.resume_point(tmp_path) == tmp_path / ckpt.LAST
    second = write(ckpt.epoch_checkpoint_name(2), 2)
    assert ckpt.resume_point(tmp_path) == second
    ckpt.link_last(tmp_path, second)  # (the mid-epoch point behind it not yet removed)
    assert ckpt.resume_point(tmp_path) == tmp_path / ckpt.LAST
    # copies instead of links
    (tmp_path / ckpt.LAST).unlink()
    shutil.copyfile(mid, tmp_path / ckpt.LAST)
    assert ckpt.resume_point(tmp_path) == second
    shutil.copyfile(second, tmp_path / ckpt.LAST)
    assert ckpt.resume_point(tmp_path) == tmp_path / ckpt.LAST
    (tmp_path / ckpt.LAST).write_bytes(b"not a checkpoint")
    assert ckpt.resume_point(tmp_path) == second
    shutil.copyfile(second, tmp_path / ckpt.LAST)
    for p in (first, mid, second):  # pruned: last.pyth alone
        p.unlink()
    assert ckpt.resume_point(tmp_path) == tmp_path / ckpt.LAST
    (tmp_path / ckpt.LAST).write_bytes(b"")  # no checkpoint at all
    assert ckpt.resume_point(tmp_path) is None


def test_avslowfast_resumes_exactly_with_dropout_drop_pathway_sync_and_more_workers(store, tmp_path, monkeypatch):
    """Every source of randomness of AVSlowFast's training (dropout, DropPathway's draw, the
    sync negatives, the augmentation) comes back on resume, and the DataLoader's worker
    count changes nothing: stopped and resumed with 2 workers equals straight with none."""
    overrides = {"model.arch": "avslowfast", "model.dropout": 0.5, "model.drop_pathway": 0.5, "train.epochs": 2,
                 "train.precise_bn_batches": 1}
    root, params = run_dir(tmp_path, store, overrides, name="av-straight")
    straight = trainer_for(root, params, monkeypatch).run()
    reference = model_weights(root / "data/kinetics/train/model" / ckpt.FINAL)
    root, params = run_dir(tmp_path, store, {**overrides, "train.workers": 2}, name="av-stopped")
    first = trainer_for(root, params, monkeypatch)
    first.should_stop = lambda: first.global_step == 1
    assert first.run().preempted
    resumed = trainer_for(root, params, monkeypatch).run()
    assert same_weights(model_weights(root / "data/kinetics/train/model" / ckpt.FINAL), reference)
    assert strip_timing(resumed.history) == strip_timing(straight.history)
    assert 0 < straight.history[0]["sync_loss"] and 0 <= straight.history[0]["audio_dropped"] <= 1


def test_train_drop_last_sets_the_steps_of_an_epoch(store, tmp_path, monkeypatch):
    for drop_last, steps in ((True, 2), (False, 3)):  # 12 training clips in batches of 5
        root, params = run_dir(tmp_path, store, {"train.batch_size": 5, "train.reference_batch": 5,
                                                 "train.drop_last": drop_last}, name=f"drop_last_{drop_last}")
        assert trainer_for(root, params, monkeypatch).steps_per_epoch == steps


def test_a_non_finite_loss_stops_the_run_naming_epoch_and_step(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, {"train.lr_policy": "steps", "train.lr_steps": [1],
                                             "train.lr_gamma": 1e30})
    trainer = trainer_for(root, params, monkeypatch)
    with pytest.raises(TrainingDiverged, match=r"at epoch 2 step \d+ .*not updated.*last checkpoint .*last\.pyth.* is kept"):
        trainer.run()
    last = ckpt.load_training_checkpoint(root / "data/kinetics/train/model" / ckpt.LAST)
    assert last["avsf"]["next_epoch"] == 1 and last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["model_state"].values() if v.is_floating_point())


def break_clip(store_dir: Path, name: str) -> str:
    """Delete the frames of clip ``name`` from its shard; returns its clip id."""
    for shard in sorted(store_dir.glob("frames/shard-*.h5")):
        with h5py.File(shard, "a") as f:
            for clip_id in list(f):
                if clip_id.startswith(name + "_"):
                    del f[f"{clip_id}/frames"]
                    return clip_id
    raise AssertionError(name)


def test_a_sample_that_fails_to_load_is_replaced_and_recorded(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, {"train.epochs": 1, "train.max_failed_fraction": 0.2})
    clip_id = break_clip(root / "data" / "kinetics" / "store", "a02")
    result = trainer_for(root, params, monkeypatch).run()
    assert [f["id"] for f in result.load_failures if f["phase"] == "train"] == [clip_id]
    assert {f["id"] for f in result.load_failures} == {clip_id}  # precise BN met it too
    assert result.history[0]["load_failures"] == 1

    root, params = run_dir(tmp_path, store, {"train.epochs": 1, "train.max_failed_fraction": 0.05}, name="strict")
    clip_id = break_clip(root / "data" / "kinetics" / "store", "a02")
    monkeypatch.chdir(root)
    with pytest.raises(TooManyLoadFailures, match=r"epoch 1: 1 of 12 training samples failed to load"):
        TrainJob(training_run(params), "fp")()  # the job, as a stage runs it: it leaves the ledger the error points to
    ledger = (root / "data/kinetics/train/model/ledger.csv").read_text().splitlines()
    assert ledger[0] == "id,stage,reason,detail" and ledger[1].startswith(f"{clip_id},train,load_failed,\"train: ")


def test_failed_loads_are_counted_in_samples_not_in_attempts(store, tmp_path, monkeypatch):
    """Half the training clips broken: a sample whose clip fails is replaced by another,
    which may fail too; the epoch counts the samples that failed, not the attempts."""
    root, params = run_dir(tmp_path, store, {"train.epochs": 1, "train.max_failed_fraction": 0.05}, name="half")
    broken = {break_clip(root / "data" / "kinetics" / "store", name) for name in ("a00", "b01", "a02", "b03", "a04")}
    trainer = trainer_for(root, params, monkeypatch)
    sampler = EpochSampler(len(trainer.train_set), 4, params.train.seed, 0, 1)
    sampler.set_epoch(0)
    failed = sum(trainer.train_set.samples[k.index].entry.clip_id in broken for k in sampler)
    with pytest.raises(TooManyLoadFailures, match=rf"epoch 1: {failed} of 12 training samples failed to load, each "
                                                  r"replaced by another"):
        trainer.run()
    attempts = [f for f in trainer.failures if f["phase"] == "train"]
    assert {f["id"] for f in attempts} == broken and len(attempts) > failed  # replacements failed too


def test_a_job_that_is_not_its_runs_owner_leaves_the_outputs_alone(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, {"train.epochs": 1})
    monkeypatch.chdir(root)
    attach = root / "running.json"
    attach.write_text(json.dumps({"run": "a-later-run", "job_id": "12"}))
    job = TrainJob(training_run(params), "fp")
    assert job(RunClaim(str(attach), "an-earlier-run")) == {"superseded": "job 12"}
    attach.unlink()  # the run finished: a leftover requeue of its job owns nothing
    assert job(RunClaim(str(attach), "an-earlier-run")) == {"superseded": "none, its run is over"}
    assert sorted(p.name for p in root.iterdir()) == ["data", "params.yaml"]
    assert sorted(p.name for p in (root / "data/kinetics").iterdir()) == ["store"]


def test_a_run_taken_over_midway_stops_every_rank_at_the_next_step_and_writes_nothing(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, {"train.epochs": 1})
    trainer = trainer_for(root, params, monkeypatch)
    trainer.owns_run = lambda: trainer.global_step < 2  # another run of the stage claims the outputs
    with pytest.raises(RunSuperseded, match=r"this run does not own data/kinetics/train/model any more: stopped at epoch 1 step 3"):
        trainer.run()
    assert trainer.global_step == 2 and not (root / "data/kinetics/train/model").exists()


def test_a_validation_clip_that_fails_is_recorded_once(store, tmp_path, monkeypatch):
    root, params = run_dir(tmp_path, store, {"train.epochs": 2})
    clip_id = break_clip(root / "data" / "kinetics" / "store", "b13")  # a validation clip
    monkeypatch.chdir(root)
    summary = TrainJob(training_run(params), "fp")()
    assert summary["final"]["videos"] == 3 and summary["load_failures"] == 3  # 2 validations and the final one
    assert summary["failed_clips"] == 1
    rows = (root / "data/kinetics/train/model/ledger.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith(f"{clip_id},train,load_failed,\"val: ")


def test_checkpoints_are_pyslowfast_files_that_rebuild_the_model(store, tmp_path, monkeypatch):
    """Our AVSlowFast's checkpoint loads whole, its classifier (which also sees audio) included."""
    root, params = run_dir(tmp_path, store, {"train.epochs": 1, "model.arch": "avslowfast"})
    trainer = trainer_for(root, params, monkeypatch)
    trainer.run()
    state = torch.load(root / "data/kinetics/train/model" / ckpt.epoch_checkpoint_name(1), weights_only=True)
    assert {"epoch", "model_state", "optimizer_state", "cfg"} <= set(state) and state["epoch"] == 0
    assert "train:" in state["cfg"] and not any(k.startswith("module.") for k in state["model_state"])
    cfg = config_from_dict(state["model_config"])
    assert cfg == trainer.cfg
    fresh = build_model(cfg)
    report = load_pyslowfast_checkpoint(fresh, root / "data/kinetics/train/model" / ckpt.FINAL)
    assert not report.missing and not report.unexpected and not report.skipped
    final = torch.load(root / "data/kinetics/train/model" / ckpt.FINAL, weights_only=True)
    assert final["avsf"]["final"]["videos"] == 4


def test_precise_bn_sets_running_statistics_to_the_average_of_batch_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3).eval()
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(4)]
    used = update_bn_stats(bn, iter(batches), lambda x: bn(x), limit=3)
    assert used == 3
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(0) for b in batches[:3]]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var(0) for b in batches[:3]]).mean(0))
    assert bn.momentum == 0.1 and not bn.training


def test_drop_pathway_is_one_draw_per_step_that_every_rank_makes_alike():
    draws = [drop_audio_draw(0, epoch, step, 0.8) for epoch in range(4) for step in range(250)]
    assert 0.75 < sum(draws) / len(draws) < 0.85
    assert draws == [drop_audio_draw(0, epoch, step, 0.8) for epoch in range(4) for step in range(250)]
    assert draws != [drop_audio_draw(1, epoch, step, 0.8) for epoch in range(4) for step in range(250)]
    assert not any(drop_audio_draw(0, 0, step, 0.0) for step in range(100))


@pytest.mark.parametrize("arch", ["slow", "fast", "audio"])
def test_every_arch_of_the_family_trains(store, tmp_path, monkeypatch, arch):
    root, params = run_dir(tmp_path, store, {"model.arch": arch, "train.epochs": 1, "train.precise_bn_batches": 0})
    trainer = trainer_for(root, params, monkeypatch)
    result = trainer.run()
    assert trainer.cfg.arch == arch and result.global_step == 3 and result.final["videos"] == 4
    assert math.isfinite(result.history[0]["loss"])


@pytest.mark.gpu
def test_a_cuda_run_uses_bf16_and_channels_last(store, tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    overrides = {"model.arch": "avslowfast", "train.epochs": 1, "train.device": "cuda",
                 "launch.resources.gpus_per_node": 1}
    root, params = run_dir(tmp_path, store, overrides)
    trainer = trainer_for(root, params, monkeypatch)
    assert trainer.s.precision == "bf16" and trainer.channels_last and torch.backends.cudnn.benchmark
    result = trainer.run()
    assert math.isfinite(result.history[0]["loss"]) and result.final["videos"] == 4


def test_precise_bn_on_two_ranks_averages_every_ranks_batches(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # spawn, not fork: a fork of a process whose OpenMP threads have run can hang in the child
    mp.start_processes(precise_bn_rank, args=(2, port, str(tmp_path)), nprocs=2, start_method="spawn")
    stats = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # Rank r's batch i holds 10 r + i + (0, 1, 2, 3): mean 10 r + i + 1.5, variance 5/3.
    expected_mean = torch.full((3,), (1.5 + 2.5 + 11.5 + 12.5) / 4)
    for s in stats:
        torch.testing.assert_close(s["mean"], expected_mean)
        torch.testing.assert_close(s["var"], torch.full((3,), 5 / 3))
