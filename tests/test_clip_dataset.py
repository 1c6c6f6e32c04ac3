"""The clip dataset over a real store: sampling, crops, audio-visual alignment, sync negatives."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avsf.data.clip_dataset import (
    EASY,
    HARD,
    ClipDataset,
    ClipSampling,
    DeviceFrameDecoder,
    collate_clips,
    normalize_video,
)
from avsf.data.jpeg import decode_jpeg
from avsf.data.logmel import LogMelSettings, hz_to_mel, log_mel
from avsf.data.store import StoreReader
from clip_factory import ClipSpec, build_store, frame_index
from conftest import REPO
from pipeline.params import ParamsError, load_params

FLASH = (60, 61)  # the white frames of "flash", shown from 2.0 s to 2.0667 s, with a 2 kHz burst
EVENT = (FLASH[0] / 30, (FLASH[-1] + 1) / 30)
SPECS = [
    ClipSpec("flash", seconds=4.0, size=(64, 48), flash_frames=FLASH),
    ClipSpec("square", seconds=3.0, size=(48, 48), label="b"),
    ClipSpec("mute", seconds=2.0, size=(64, 48), audio_seconds=0),
]
SAMPLING = ClipSampling(num_frames=4, stride=8, alpha=4, train_scale=(48, 60), train_crop=40, test_scale=48,
                        test_crop=48, test_clips=3, test_crops=3, spec_frames=64)
BURST_BIN = round(hz_to_mel(2000.0) / (hz_to_mel(8000.0) / 81)) - 1  # the mel bin centred nearest 2 kHz


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("dataset"), SPECS, {"decode.short_side": 48})


def dataset(store, mode="train", sampling=SAMPLING, **kwargs) -> ClipDataset:
    return ClipDataset(store[0], store[1], "train", mode, sampling, **kwargs)


def video_index(ds: ClipDataset, name: str) -> int:
    return next(i for i, e in enumerate(ds.entries) if e.youtube_id == name)


def test_items_have_the_documented_shapes(store):
    torch.manual_seed(0)
    ds = dataset(store)
    assert len(ds) == 3 and ds.classes == ["a", "b"]
    item = ds[video_index(ds, "square")]
    assert item["slow"].shape == (3, 4, 40, 40) and item["fast"].shape == (3, 16, 40, 40)
    assert item["slow"].dtype == item["fast"].dtype == torch.uint8
    assert torch.equal(item["slow"], item["fast"][:, ::4])
    assert item["audio"].shape == (1, 64, 80) and item["audio"].dtype == torch.float32
    assert item["label"] == 1 and item["has_audio"] is True
    test = dataset(store, "test")
    assert len(test) == 3 * 3 * 3
    assert test[10]["slow"].shape == (3, 4, 48, 48) and (test[10]["index"], test[10]["clip"], test[10]["crop"]) == (1, 0, 1)


def test_fast_frames_are_consecutive_at_tau_over_alpha_and_test_clips_uniform(store):
    ds = dataset(store, "test")
    square = video_index(ds, "square")  # 90 frames, 48x48: a test crop is the whole frame
    starts = []
    for clip in range(3):
        item = ds[(square * 3 + clip) * 3 + 1]
        fast = [frame_index(f.permute(1, 2, 0).numpy()) for f in item["fast"].unbind(1)]
        slow = [frame_index(f.permute(1, 2, 0).numpy()) for f in item["slow"].unbind(1)]
        start = fast[0]
        assert fast == [start + 2 * j for j in range(16)]
        assert slow == [start + 8 * i for i in range(4)]
        assert item["start_s"] == pytest.approx(start / 30)
        starts.append(start)
    assert starts == [0, 19, 38]  # PySlowFast's uniform clips: 58 * i / 3 of the 90 - 32 later starts


def test_pyslowfast_temporal_sampling_picks_frames_by_linspace(store):
    """PySlowFast's picks: Fast at linspace(start, start + 31, 16), Slow at linspace(0, 15, 4) of
    those (frames 0, 10, 20, 31 of the 32 where strided takes 0, 8, 16, 24); test clips start
    between frames (58 * i / 3), and the audio window starts where the clip does."""
    sampling = dataclasses.replace(SAMPLING, temporal_sampling="pyslowfast")
    test = dataset(store, "test", sampling)
    square = video_index(test, "square")
    clip0 = test[(square * 3 + 0) * 3 + 1]
    assert [frame_index(f.permute(1, 2, 0).numpy()) for f in clip0["fast"].unbind(1)] == [*range(0, 30, 2), 31]
    assert [frame_index(f.permute(1, 2, 0).numpy()) for f in clip0["slow"].unbind(1)] == [0, 10, 20, 31]
    for clip in (1, 2):
        start = Fraction(58 * clip, 3)
        item = test[(square * 3 + clip) * 3 + 1]
        assert item["start_s"] == pytest.approx(float(start) / 30)
        expected = [math.floor(start + Fraction(31 * k, 15)) for k in range(16)]  # (40 and 49 among them, exactly)
        assert [frame_index(f.permute(1, 2, 0).numpy()) for f in item["fast"].unbind(1)] == expected
        assert [frame_index(f.permute(1, 2, 0).numpy()) for f in item["slow"].unbind(1)] == expected[::5]
    torch.manual_seed(0)
    whole = dataclasses.replace(sampling, train_scale=(48, 48), train_crop=48, flip=False)  # stripes kept readable
    train = dataset(store, sampling=whole)
    item = train[video_index(train, "square")]
    start = round(item["start_s"] * 30)
    slow = [frame_index(f.permute(1, 2, 0).numpy()) for f in item["slow"].unbind(1)]
    assert slow == [start + d for d in (0, 10, 20, 31)]
    assert torch.equal(item["slow"], item["fast"][:, [0, 5, 10, 15]])
    blank = test._blank_item(0)
    assert blank["slow"].shape == (3, 4, 48, 48)


def test_test_crops_are_left_centre_right_of_the_stored_frame(store):
    ds = dataset(store, "test")
    flash = video_index(ds, "flash")
    reader = StoreReader(*store)
    stored = decode_jpeg(reader.frames(ds.entries[flash], 0, 1)[0])  # 48 x 64
    for crop, left in enumerate((0, 8, 16)):
        item = ds[flash * 9 + crop]  # clip 0 starts at frame 0
        assert np.array_equal(item["fast"][:, 0].permute(1, 2, 0).numpy(), stored[:, left : left + 48])


def test_training_scale_jitter_crop_and_flip(store):
    torch.manual_seed(0)
    ds = dataset(store)
    sides = {ds._train_box(48, 64)[0][2] for _ in range(200)}
    # Short side 48 scaled to 48..60 then a 40 crop: 40..32 stored pixels.
    assert min(sides) == 32 and max(sides) == 40
    whole = ClipSampling(num_frames=4, stride=8, alpha=4, train_scale=(48, 48), train_crop=48)
    ds = dataset(store, sampling=whole)
    square = video_index(ds, "square")
    reader = StoreReader(*store)
    flipped = []
    for _ in range(12):
        item = ds[square]
        first = decode_jpeg(reader.frames(ds.entries[square], int(round(item["start_s"] * 30)), 91)[0])
        frame = item["fast"][:, 0].permute(1, 2, 0).numpy()
        assert np.array_equal(frame, first) or np.array_equal(frame, first[:, ::-1])
        flipped.append(not np.array_equal(frame, first))
    assert any(flipped) and not all(flipped)


def burst_time(ds: ClipDataset, item: dict, key: str = "audio", start_key: str = "start_s") -> float:
    """Time (s, in the video) of the log-mel row where the 2 kHz burst is loudest."""
    row = int(item[key][0, :, BURST_BIN].argmax())
    length = ds.sampling.span / 30
    return item[start_key] + (row + 0.5) * length / ds.sampling.spec_frames


def test_a_flash_and_its_sound_land_in_the_same_place(store):
    torch.manual_seed(1)
    ds = dataset(store)
    flash = video_index(ds, "flash")
    hop = 256 / 16000
    checked = 0
    for _ in range(40):
        item = ds[flash]
        brightness = item["fast"].float().mean(dim=(0, 2, 3))
        if brightness.max() < 200:
            continue  # this clip's Fast frames miss the flash
        j = int(brightness.argmax())
        seen = item["start_s"] + (2 * j) / 30  # the Fast frame shows this store frame from this time
        assert EVENT[0] <= seen < EVENT[1]
        assert EVENT[0] - hop <= burst_time(ds, item) <= EVENT[1] + hop
        checked += 1
    assert checked >= 5
    # Test sampling: clip 2 of 3 starts at frame 58 (88 * 2 / 3) and holds the event at frames 60-61.
    item = dataset(store, "test")[flash * 9 + 2 * 3 + 1]
    assert item["start_s"] == pytest.approx(58 / 30)
    assert EVENT[0] - hop <= burst_time(ds, item) <= EVENT[1] + hop


def test_hard_negatives_are_the_same_clip_shifted_and_easy_ones_another_clip(store):
    torch.manual_seed(2)
    ds = dataset(store, sync_negatives=True, hard_negative_fraction=1.0)
    flash = video_index(ds, "flash")
    for _ in range(20):
        item = ds[flash]
        assert item["negative_kind"] == HARD
        assert abs(item["negative_start_s"] - item["start_s"]) >= 0.5 - 1e-9
        assert 0 <= item["negative_start_s"] <= 4.0 - 32 / 30 + 1e-9
        expected = ds._audio_window(ds.entries[flash], item["negative_start_s"], 32 / 30)
        assert torch.equal(item["audio_negative"], expected)
        if EVENT[0] <= item["negative_start_s"] + 0.5 <= EVENT[1]:
            assert EVENT[0] - 0.05 <= burst_time(ds, item, "audio_negative", "negative_start_s") <= EVENT[1] + 0.05
    ds.hard_negative_fraction = 0.0
    kinds = {ds[flash]["negative_kind"] for _ in range(20)}
    assert kinds == {EASY}
    item = ds[flash]
    assert item["negative_has_audio"] in (True, False) and item["audio_negative"].shape == (1, 64, 80)


def test_audio_is_normalised_and_a_clip_without_audio_is_the_normalised_mean(store):
    """A clip without audio reads as zeros (the store's mean after normalisation), not as
    log(1e-8), which sits several standard deviations below every real clip."""
    ds = dataset(store)
    stats = StoreReader(*store).stats()
    item = ds[video_index(ds, "mute")]
    assert item["has_audio"] is False and item["audible"] is False
    assert torch.equal(item["audio"], torch.zeros(1, 64, 80))
    assert (math.log(1e-8) - stats["mean"]) / stats["std"] < -0.5  # what it used to be
    # Flash's window: the stored rows linearly interpolated at the output rows' times.
    torch.manual_seed(3)
    flash = video_index(ds, "flash")
    item = ds[flash]
    rows = StoreReader(*store).logmel(ds.entries[flash], 0, 10**9).astype(np.float64)
    times = item["start_s"] + (np.arange(64) + 0.5) * (32 / 30) / 64
    expected = np.stack([np.interp(times, np.arange(len(rows)) / 62.5, rows[:, m]) for m in range(80)], axis=1)
    assert np.allclose(item["audio"][0].numpy() * stats["std"] + stats["mean"], expected, atol=1e-4)


AUTHORS_FEATURES = {"spectrogram.mel_norm": "slaney", "spectrogram.center": False,
                    "spectrogram.fixed_stats": [-7.03, 4.66]}


def test_the_authors_log_mel_features_are_stored_timed_and_normalised_as_theirs(tmp_path):
    """spectrogram.mel_norm slaney, center false, fixed_stats [-7.03, 4.66]: the stage stores
    the authors' features (log_mel with those settings), normalised with their Kinetics
    statistics (the measured ones kept beside), and the dataset reads each unpadded row at
    its centre, half a window (16 ms) after its first sample."""
    frames_dir, logmel_dir = build_store(tmp_path, SPECS[:1], {"decode.short_side": 48, **AUTHORS_FEATURES})
    stats = json.loads((logmel_dir / "stats.json").read_text())
    assert (stats["mean"], stats["std"]) == (-7.03, 4.66) and set(stats["measured"]) == {"mean", "std"}
    reader = StoreReader(frames_dir, logmel_dir)
    [entry] = reader.entries
    attrs = reader.attrs(entry, store="logmel")
    assert (attrs["mel_norm"], attrs["center"], attrs["first_row_s"]) == ("slaney", False, 0.016)
    rows = reader.logmel(entry, 0, 10**9)
    settings = LogMelSettings(mel_norm="slaney", center=False)
    pcm = torch.from_numpy(reader.audio(entry).astype(np.float32) / 32768)
    assert np.allclose(rows, log_mel(pcm, settings).numpy(), atol=0.01, rtol=0)  # float16 in the store
    assert len(rows) == 1 + (len(pcm) - 512) // 256
    ds = ClipDataset(frames_dir, logmel_dir, "train", "train", SAMPLING)
    assert (ds.mean, ds.std) == (-7.03, 4.66)
    torch.manual_seed(4)
    item = ds[0]
    times = item["start_s"] + (np.arange(64) + 0.5) * (32 / 30) / 64
    centres = 0.016 + np.arange(len(rows)) / 62.5
    expected = np.stack([np.interp(times, centres, rows[:, m].astype(np.float64)) for m in range(80)], axis=1)
    assert np.allclose(item["audio"][0].numpy() * 4.66 - 7.03, expected, atol=1e-4)


def test_dataloader_workers_read_the_same_items(store):
    ds = dataset(store, "test")
    loader = DataLoader(ds, batch_size=9, num_workers=2)
    batches = list(loader)
    assert ds.reader._handles == {}  # the parent never opened the store: each worker did
    for batch_index, batch in enumerate(batches):
        for k in range(len(batch["index"])):
            item = ds[batch_index * 9 + k]
            assert torch.equal(batch["fast"][k], item["fast"]) and torch.equal(batch["audio"][k], item["audio"])


def test_normalize_video_uses_the_kinetics_statistics():
    frames = torch.full((2, 3, 4, 5, 5), 255, dtype=torch.uint8)
    out = normalize_video(frames)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, (1 - 0.45) / 0.225))


def test_sampling_rejects_a_stride_alpha_does_not_divide():
    with pytest.raises(ValueError, match="multiple of alpha"):
        ClipSampling(num_frames=8, stride=6, alpha=4)


@pytest.mark.parametrize("temporal", ["strided", "pyslowfast"])
def test_device_decoding_gives_the_worker_path_frames(store, temporal):
    """decode_on="device" hands JPEGs and crops to DeviceFrameDecoder (nvJPEG on CUDA; here
    its CPU path), which must give what the workers would have made."""
    sampling = dataclasses.replace(SAMPLING, temporal_sampling=temporal)
    worker = dataset(store, sampling=sampling)
    device = dataset(store, sampling=sampling, decode_on="device")
    loader = DataLoader(device, batch_size=3, collate_fn=collate_clips)
    decoder = DeviceFrameDecoder(sampling, SAMPLING.train_crop, device="cpu")
    for seed in range(3):
        batches = iter(loader)  # (making the iterator draws from the RNG: seed after it)
        torch.manual_seed(seed)
        batch = decoder(next(batches))
        torch.manual_seed(seed)
        expected = [worker[i] for i in range(3)]
        assert batch["fast"].shape == (3, 3, 16, 40, 40) and batch["slow"].shape == (3, 3, 4, 40, 40)
        for k, item in enumerate(expected):
            assert torch.equal(batch["fast"][k], item["fast"]) and torch.equal(batch["slow"][k], item["slow"])
            assert torch.equal(batch["audio"][k], item["audio"])


@pytest.mark.parametrize("override, key", [
    ("dataset.train_crop=200", "dataset.train_crop"),  # larger than the smallest train_scale
    ("dataset.train_scale=[160, 128]", "dataset.train_scale"),
    ("dataset.test_crops=2", "dataset.test_crops"),
    ("spectrogram.win_length=1024", "spectrogram.win_length"),  # longer than n_fft
])
def test_params_sections_reject_impossible_sampling(override, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(REPO / "params.yaml", [override])


@pytest.mark.gpu
def test_nvjpeg_decoding_on_cuda_matches_the_worker_path(store):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("torchvision")
    worker, device = dataset(store), dataset(store, decode_on="device")
    batches = iter(DataLoader(device, batch_size=3, collate_fn=collate_clips))
    torch.manual_seed(0)
    batch = DeviceFrameDecoder(SAMPLING, SAMPLING.train_crop, device="cuda")(next(batches))
    torch.manual_seed(0)
    for k in range(3):
        expected = worker[k]["fast"].float()
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels.
        assert (batch["fast"][k].cpu().float() - expected).abs().mean() < 2.0


def test_the_rotation_pretext_turns_both_pathways_and_nothing_else(store):
    from avsf.data.clip_dataset import SampleKey

    plain, turned = dataset(store), dataset(store, rotation=True)
    seen = set()
    for seed in range(12):
        key = SampleKey(video_index(plain, "flash"), seed)
        a, b = plain[key], turned[key]
        assert b["rotation"] in range(4)
        seen.add(b["rotation"])
        for pathway in ("slow", "fast"):
            assert torch.equal(b[pathway], torch.rot90(a[pathway], b["rotation"], dims=(-2, -1)))
        assert torch.equal(a["audio"], b["audio"]) and a["start_s"] == b["start_s"]
    assert seen == {0, 1, 2, 3}  # every turn is drawn
    test = dataset(store, "test", rotation=True)
    turns = [test[i]["rotation"] for i in range(len(test))]
    assert turns == [test[i]["rotation"] for i in range(len(test))]  # fixed in test ...
    assert len(set(turns)) > 1  # ... but not one turn for every item
    with pytest.raises(ValueError, match="rotation turns the decoded frames"):
        dataset(store, rotation=True, decode_on="device")
