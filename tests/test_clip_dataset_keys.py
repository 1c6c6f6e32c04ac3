"""The clip dataset's keys, seeds and robustness: items that depend only on their key, the
sync curriculum in persistent workers, audibility on the raw log-mel, silent clips that do
not skew the audio BN, and clips that fail to load."""

from __future__ import annotations

import shutil

import h5py
import pytest
import torch
from torch.utils.data import DataLoader

from avsf.data.clip_dataset import EASY, HARD, ClipDataset, ClipSampling, SampleKey, collate_clips
from avsf.models import HeadConfig, build_model, model_config
from avsf.train.sampler import EpochSampler
from clip_factory import ClipSpec, build_store

NOISY = [ClipSpec(f"noise{i}", seconds=3.0, size=(48, 48), noise=0.1, label="ab"[i % 2]) for i in range(7)]
SPECS = NOISY + [
    # An audio stream of digital silence, outside the statistics split (its log(1e-8) values
    # would drag the store's mean down).
    ClipSpec("hush", seconds=3.0, size=(48, 48), tone_hz=0.0, split="val"),
    ClipSpec("mute", seconds=3.0, size=(48, 48), audio_seconds=0),  # no audio stream
]
SAMPLING = ClipSampling(num_frames=2, stride=8, alpha=4, train_scale=(40, 48), train_crop=32, test_scale=32,
                        test_crop=32, test_clips=2, test_crops=1, spec_frames=32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("keys"), SPECS, {"decode.short_side": 40, "decode.clips_per_shard": 3})


def dataset(store, mode="train", split="train", **kwargs) -> ClipDataset:
    return ClipDataset(store[0], store[1], split, mode, SAMPLING, **kwargs)


def index_of(ds: ClipDataset, name: str) -> int:
    return next(i for i, e in enumerate(ds.entries) if e.youtube_id == name)


def same(a: dict, b: dict) -> bool:
    keys = [k for k in a if isinstance(a[k], torch.Tensor)]
    return all(torch.equal(a[k], b[k]) for k in keys) and a["start_s"] == b["start_s"]


def batches(ds, sampler, workers, persistent=False):
    loader = DataLoader(ds, batch_size=sampler.batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=persistent, collate_fn=collate_clips)
    return loader, list(loader)


def test_an_item_depends_only_on_its_key(store):
    ds = dataset(store, sync_negatives=True, hard_negative_fraction=0.5)
    key = SampleKey(2, seed=1234)
    first = ds[key]
    torch.manual_seed(99)  # the global RNG plays no part
    ds[SampleKey(3, seed=5)]
    assert same(ds[key], first) and torch.equal(ds[key]["audio_negative"], first["audio_negative"])
    assert not same(ds[SampleKey(2, seed=1235)], first)


def test_workers_and_a_resumed_epoch_give_the_same_batches(store):
    ds = dataset(store, sync_negatives=True)
    sampler = EpochSampler(len(ds), batch_size=2, seed=7)
    sampler.set_epoch(3, hard_negative_fraction=0.25)
    _, in_process = batches(ds, sampler, workers=0)
    _, in_workers = batches(ds, sampler, workers=2)
    sampler.set_epoch(3, start_batch=2, hard_negative_fraction=0.25)
    _, resumed = batches(ds, sampler, workers=2)
    assert len(in_process) == 4 and len(resumed) == 2  # 8 clips in batches of 2
    for a, b in zip(in_process, in_workers):
        assert torch.equal(a["fast"], b["fast"]) and torch.equal(a["audio_negative"], b["audio_negative"])
    for a, b in zip(in_process[2:], resumed):
        assert torch.equal(a["fast"], b["fast"]) and torch.equal(a["audio"], b["audio"])


def test_the_sync_curriculum_reaches_persistent_workers(store):
    """The hard-negative share travels with each key, so workers started in an earlier epoch
    (persistent_workers) use the current one."""
    ds = dataset(store, sync_negatives=True)
    sampler = EpochSampler(len(ds), batch_size=3, seed=0)
    loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=2, persistent_workers=True,
                        collate_fn=collate_clips)
    kinds = []
    for epoch, fraction in enumerate((0.0, 1.0)):
        sampler.set_epoch(epoch, hard_negative_fraction=fraction)
        kinds.append({int(k) for batch in loader for k in batch["negative_kind"]})
    assert kinds == [{EASY}, {HARD}]


def test_audibility_is_judged_on_the_raw_log_mel(store):
    ds = dataset(store, sync_negatives=True)
    flags = {name: ds[SampleKey(index_of(ds, name), seed=1)]["audible"] for name in ("noise0", "mute")}
    assert flags == {"noise0": True, "mute": False}
    val = dataset(store, split="val", sync_negatives=True)
    hush = val[SampleKey(index_of(val, "hush"), seed=1, hard_negative_fraction=1.0)]
    assert hush["audible"] is False
    # A track of digital silence reads as the normalised mean, as a clip without audio does.
    assert torch.equal(hush["audio"], torch.zeros_like(hush["audio"]))
    assert torch.equal(hush["audio_negative"], torch.zeros_like(hush["audio"]))
    assert hush["has_audio"] is True and hush["negative_kind"] == HARD and hush["negative_audible"] is False


def test_a_silent_clip_does_not_skew_the_audio_batch_statistics(store):
    """The audio stem's BN sees about the same batch mean and variance whether the batch's
    last clip is silent or audible; log(1e-8) for silence made it an outlier of many std."""
    ds = dataset(store)
    torch.manual_seed(0)
    cfg = model_config("avslowfast", frames=2, stride=8, tiny=True, mel_bins=80,
                       head=HeadConfig(num_classes=2, dropout=0.0))
    stem = build_model(cfg).s1.pathway2_stem
    seen = []
    stem.bn.register_forward_hook(lambda m, i, o: seen.append(i[0].transpose(0, 1).flatten(1)))
    audible = [ds[SampleKey(index_of(ds, f"noise{i}"), seed=i)]["audio"] for i in range(7)]
    for last in ("noise6", "mute"):
        batch = torch.stack(audible[:6] + [ds[SampleKey(index_of(ds, last), seed=0)]["audio"]])
        stem.train()(batch)
    with_audible, with_silent = seen
    scale = with_audible.var(dim=1).sqrt()
    assert ((with_silent.mean(dim=1) - with_audible.mean(dim=1)).abs() / scale).max() < 0.5
    ratio = with_silent.var(dim=1) / with_audible.var(dim=1)
    assert 0.7 < ratio.min() and ratio.max() < 1.3


@pytest.fixture
def broken_store(store, tmp_path):
    """A copy of the store in which noise3's frames cannot be read."""
    frames, logmel = tmp_path / "frames", tmp_path / "logmel"
    shutil.copytree(store[0], frames)
    shutil.copytree(store[1], logmel)
    ds = ClipDataset(frames, logmel, "train", "train", SAMPLING)
    entry = ds.entries[index_of(ds, "noise3")]
    with h5py.File(frames / entry.shard, "a") as f:
        del f[f"{entry.clip_id}/frames"]
    return frames, logmel


def test_a_clip_that_fails_to_load_is_replaced_and_recorded(broken_store):
    ds = dataset(broken_store)
    broken = index_of(ds, "noise3")
    item = ds[SampleKey(broken, seed=3)]
    assert item["index"] != broken and item["fast"].shape == (3, 8, 32, 32)
    [failure] = item["load_failures"]
    assert failure["id"] == ds.entries[broken].clip_id and failure["reason"] == "load_failed"
    assert "frames" in failure["detail"]
    assert same(ds[SampleKey(broken, seed=3)], item)  # the replacement comes from the key's seed
    batch = collate_clips([ds[SampleKey(i, seed=i)] for i in range(len(ds))])
    assert [f["id"] for f in batch["load_failures"]] == [ds.entries[broken].clip_id]
    test = dataset(broken_store, "test")
    blank = test[broken * 2 + 1]
    assert blank["label"] == -1 and blank["fast"].shape == (3, 8, 32, 32) and blank["audible"] is False
    assert blank["load_failures"][0]["id"] == ds.entries[broken].clip_id
