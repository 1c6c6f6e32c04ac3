"""The audiovisual clip dataset: Slow and Fast frames and the matching log-mel window.

For a clip of ``T x tau`` (Slow: T frames, one every tau) with Fast rate ``alpha``::

    store frames  |f0 f1 f2 ... f63|            one contiguous read of T * tau frames
    Fast          |f0 .. f2 .. f4 ...|          alpha * T frames, one every tau / alpha
    Slow          |f0 ....... f8 ...|           every alpha-th Fast frame (T frames)
    log-mel       [t0 ──────────── t1)          the same time span, resampled to spec_frames rows

Time is shared by all three: frame k is shown from k / fps, log-mel row j is centred on
j / rows_per_second, and output row i of the audio window sits at
t0 + (i + 0.5) * (t1 - t0) / spec_frames. So a visual event and its sound land at the same
fraction of the clip.

Training (the papers' recipe): a random clip, short side drawn from ``train_scale``, a
random ``train_crop`` square, random horizontal flip. Test: ``test_clips`` uniform clips x
``test_crops`` crops (left/centre/right along the longer side) at ``test_scale``; item i is
video i // (clips * crops). Scale and crop are done as one crop in the stored frame plus
one resize of the crop.

Audio-visual synchronisation: with ``sync_negatives`` each item also carries a negative
audio window, from another clip (easy) or from the same clip shifted by at least
``hard_negative_min_shift_s`` (hard, with probability ``hard_negative_fraction``; set it
between epochs for a curriculum, workers pick it up when they restart each epoch).

Frames come out as uint8 (four times less to copy to the GPU); normalise them on the
device with :func:`normalize_video`. With ``decode_on="device"`` the workers hand over the
JPEG bytes and the crop instead, and :class:`DeviceFrameDecoder` decodes them on the GPU
(nvJPEG); batch such items with :func:`collate_clips`. Audio comes out normalised with the
statistics the spectrogram stage measured. A clip without audio gets the log-mel of
silence and ``has_audio`` False.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from avsf.data.jpeg import decode_jpeg, jpeg_size
from avsf.data.store import LOGMEL, StoreEntry, StoreReader

VIDEO_MEAN = (0.45, 0.45, 0.45)  # PySlowFast's Kinetics values, on [0, 1] pixels
VIDEO_STD = (0.225, 0.225, 0.225)
EASY, HARD = 1, 2  # negative_kind values


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut from the store: the model's T x tau and alpha, and the augmentation."""

    num_frames: int = 8  # T, Slow pathway frames
    stride: int = 8  # tau, in frames at the store's rate
    alpha: int = 4  # Fast pathway: alpha * T frames, one every tau / alpha
    train_scale: tuple[int, int] = (256, 320)
    train_crop: int = 224
    flip: bool = True
    test_scale: int = 256
    test_crop: int = 256
    test_clips: int = 10
    test_crops: int = 3
    spec_frames: int = 128
    hard_negative_min_shift_s: float = 0.5

    def __post_init__(self) -> None:
        if self.stride % self.alpha:
            raise ValueError(f"stride (tau = {self.stride}) must be a multiple of alpha ({self.alpha})")
        if self.test_crops not in (1, 3):
            raise ValueError("test_crops must be 1 or 3")

    @property
    def span(self) -> int:
        """Frames of the store one clip covers."""
        return self.num_frames * self.stride

    @property
    def fast_stride(self) -> int:
        return self.stride // self.alpha


def normalize_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, T, H, W] -> float, (x / 255 - mean) / std per channel; run it on the GPU."""
    shape = (3, 1, 1, 1)
    mean = torch.tensor(VIDEO_MEAN, device=frames.device).view(shape)
    std = torch.tensor(VIDEO_STD, device=frames.device).view(shape)
    return (frames.float() / 255 - mean) / std


def crop_resize_flip(frames: torch.Tensor, box: tuple[int, int, int], size: int, flip: bool) -> torch.Tensor:
    """uint8 [T, 3, H, W] -> uint8 [3, T, size, size]: the square ``box`` (top, left, side),
    resized to ``size`` (bilinear; antialiased when shrinking), mirrored when ``flip``."""
    top, left, side = box
    frames = frames[:, :, top : top + side, left : left + side]
    if side != size:
        if frames.is_cuda:  # CUDA's bilinear resize takes floating point only
            frames = F.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=side > size).round_().clamp_(0, 255).to(torch.uint8)
        else:
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=side > size)
    if flip:
        frames = frames.flip(-1)
    return frames.permute(1, 0, 2, 3).contiguous()


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, except that each item's ``fast_jpegs`` (decode_on="device") stay
    a list of 1-D uint8 tensors: they differ in length."""
    jpegs = [item.pop("fast_jpegs") for item in items] if "fast_jpegs" in items[0] else None
    batch = default_collate(items)
    if jpegs is not None:
        batch["fast_jpegs"] = jpegs
    return batch


class DeviceFrameDecoder:
    """Finishes batches of a ClipDataset with decode_on="device" where the model runs::

        fast_jpegs (B lists of alpha*T JPEGs), box, flip
            ──decode (nvJPEG through torchvision on CUDA; simplejpeg on the CPU)──>
            ──crop_resize_flip──> fast [B, 3, alpha*T, S, S] uint8, slow = every alpha-th

    so DataLoader workers only read bytes and the GPU does the pixel work.
    """

    def __init__(self, sampling: ClipSampling, size: int, device: str | torch.device = "cuda"):
        self.alpha = sampling.alpha
        self.size = size
        self.device = torch.device(device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        jpegs = batch.pop("fast_jpegs")
        per_item = len(jpegs[0])
        images = self._decode([j for item in jpegs for j in item])
        fast = []
        for i, (box, flip) in enumerate(zip(batch["box"].tolist(), batch["flip"].tolist())):
            frames = torch.stack(images[i * per_item : (i + 1) * per_item])  # [T, 3, H, W]
            fast.append(crop_resize_flip(frames, tuple(box), self.size, flip))
        batch["fast"] = torch.stack(fast)
        batch["slow"] = batch["fast"][:, :, :: self.alpha].contiguous()
        return batch

    def _decode(self, jpegs: list[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 [3, H, W] images on the device."""
        if self.device.type == "cuda":
            from torchvision.io import decode_jpeg as nvjpeg  # present with CUDA builds of torchvision

            return nvjpeg(jpegs, device=self.device)
        return [torch.from_numpy(decode_jpeg(j.numpy())).permute(2, 0, 1).to(self.device) for j in jpegs]


class ClipDataset(Dataset):
    """Clips of one split of the store; see the module docstring for what an item holds."""

    def __init__(
        self,
        frames_dir: str | os.PathLike,
        logmel_dir: str | os.PathLike | None,
        split: str,
        mode: Literal["train", "test"],
        sampling: ClipSampling = ClipSampling(),
        sync_negatives: bool = False,
        hard_negative_fraction: float = 0.0,
        decode_on: Literal["worker", "device"] = "worker",
    ):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', not {mode!r}")
        if decode_on not in ("worker", "device"):
            raise ValueError(f"decode_on must be 'worker' or 'device', not {decode_on!r}")
        self.decode_on = decode_on
        self.reader = StoreReader(frames_dir, logmel_dir)
        self.entries: list[StoreEntry] = [e for e in self.reader.entries if e.split == split]
        self.mode = mode
        self.sampling = sampling
        self.sync_negatives = sync_negatives
        self.hard_negative_fraction = hard_negative_fraction
        self.classes = self.reader.classes()
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        self.audio = logmel_dir is not None
        if self.audio:
            stats = self.reader.stats()
            self.mean, self.std = float(stats["mean"]), float(stats["std"])
            self.silence = math.log(float(stats.get("log_offset", 1e-8)))
            self._audio_layout: tuple[float, int] | None = None  # rows per second, mel bins

    def __len__(self) -> int:
        if self.mode == "train":
            return len(self.entries)
        return len(self.entries) * self.sampling.test_clips * self.sampling.test_crops

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.sampling
        if self.mode == "train":
            video, clip, crop = index, -1, -1
        else:
            per_video = s.test_clips * s.test_crops
            video, clip, crop = index // per_video, (index % per_video) // s.test_crops, index % s.test_crops
        entry = self.entries[video]
        start = self._start_frame(entry, clip)
        item: dict[str, Any] = {
            **self._frames(entry, start, crop),
            "label": self._class_index.get(entry.label, -1),
            "index": video,
            "clip": clip,
            "crop": crop,
            "start_s": start / entry.fps,
        }
        if self.audio:
            t0, length = start / entry.fps, s.span / entry.fps
            item["audio"] = self._audio_window(entry, t0, length)
            item["has_audio"] = entry.has_audio
            if self.sync_negatives:
                item.update(self._negative(video, entry, t0, length))
        return item

    # ------------------------------------------------------------------ time

    def _start_frame(self, entry: StoreEntry, clip: int) -> int:
        room = max(entry.num_frames - self.sampling.span, 0)
        if clip < 0:
            return int(torch.randint(0, room + 1, ()).item())
        clips = self.sampling.test_clips
        return round(room * clip / (clips - 1)) if clips > 1 else room // 2

    # ------------------------------------------------------------------ frames

    def _frames(self, entry: StoreEntry, start: int, crop: int) -> dict[str, Any]:
        """Slow and Fast uint8 [3, frames, size, size] from one contiguous read of the span
        (every fast_stride-th frame kept); with decode_on="device", the Fast frames' JPEGs
        and the crop instead, for :class:`DeviceFrameDecoder`."""
        s = self.sampling
        jpegs = self.reader.frames(entry, start, start + s.span)
        last = len(jpegs) - 1  # a clip shorter than the span repeats its last frame
        picks = [min(j * s.fast_stride, last) for j in range(s.alpha * s.num_frames)]
        height, width = jpeg_size(jpegs[0])
        box, size = self._train_box(height, width) if crop < 0 else self._test_box(height, width, crop)
        flip = crop < 0 and s.flip and bool(torch.rand(()) < 0.5)
        if self.decode_on == "device":
            return {"fast_jpegs": [torch.from_numpy(jpegs[p]) for p in picks], "box": torch.tensor(box), "flip": flip}
        decoded = {p: decode_jpeg(jpegs[p]) for p in dict.fromkeys(picks)}
        top, left, side = box
        batch = np.stack([decoded[p][top : top + side, left : left + side] for p in picks])
        fast = crop_resize_flip(torch.from_numpy(batch).permute(0, 3, 1, 2), (0, 0, side), size, flip)
        return {"slow": fast[:, :: s.alpha].contiguous(), "fast": fast}

    def _train_box(self, height: int, width: int) -> tuple[tuple[int, int, int], int]:
        """A random square of the stored frame that becomes ``train_crop`` pixels once the short
        side is scaled to a size drawn from ``train_scale``."""
        s = self.sampling
        low, high = s.train_scale
        scale = int(torch.randint(low, high + 1, ())) / min(height, width)
        side = min(round(s.train_crop / scale), height, width)
        top = int(torch.randint(0, height - side + 1, ()))
        left = int(torch.randint(0, width - side + 1, ()))
        return (top, left, side), s.train_crop

    def _test_box(self, height: int, width: int, crop: int) -> tuple[tuple[int, int, int], int]:
        """Crop ``crop`` of ``test_crops`` (0/1/2: left/centre/right, or top/centre/bottom when
        portrait) of the stored frame, sized to become ``test_crop`` at ``test_scale``."""
        s = self.sampling
        scale = s.test_scale / min(height, width)
        side = min(round(s.test_crop / scale), height, width)
        position = 1 if s.test_crops == 1 else crop  # 0, 1, 2: start, middle, end of the long side
        if width >= height:
            return ((height - side) // 2, (width - side) * position // 2, side), s.test_crop
        return ((height - side) * position // 2, (width - side) // 2, side), s.test_crop

    # ------------------------------------------------------------------ audio

    def _audio_window(self, entry: StoreEntry, t0: float, length: float) -> torch.Tensor:
        """Normalised float32 [1, spec_frames, n_mels] covering [t0, t0 + length)."""
        rate, mels = self._layout(entry)
        frames = self.sampling.spec_frames
        if not entry.has_audio:
            window = np.full((frames, mels), self.silence, np.float32)
        else:
            # Output row i sits at t0 + (i + 0.5) * length / frames, in log-mel rows.
            centres = (t0 + (np.arange(frames) + 0.5) * length / frames) * rate
            first = max(int(np.floor(centres[0])), 0)
            rows = self.reader.logmel(entry, first, int(np.ceil(centres[-1])) + 2).astype(np.float32)
            position = np.clip(centres - first, 0, len(rows) - 1)
            low = np.minimum(np.floor(position).astype(np.int64), len(rows) - 1)
            high = np.minimum(low + 1, len(rows) - 1)
            weight = (position - low)[:, None].astype(np.float32)
            window = rows[low] * (1 - weight) + rows[high] * weight
        return torch.from_numpy((window - self.mean) / self.std).unsqueeze(0)

    def _layout(self, entry: StoreEntry) -> tuple[float, int]:
        """(log-mel rows per second, mel bins), read once from a clip's attributes."""
        if self._audio_layout is None:
            attrs = self.reader.attrs(entry, store=LOGMEL)
            self._audio_layout = (float(attrs["frames_per_second"]), int(attrs["n_mels"]))
        return self._audio_layout

    def _negative(self, video: int, entry: StoreEntry, t0: float, length: float) -> dict[str, Any]:
        """An out-of-sync audio window: same clip shifted (hard) or another clip (easy)."""
        shift = self.sampling.hard_negative_min_shift_s
        latest = max(entry.duration - length, 0.0)
        # Starts at least `shift` before or after t0 that keep the window inside the clip.
        allowed = [(lo, hi) for lo, hi in ((0.0, t0 - shift), (t0 + shift, latest)) if lo <= hi]
        if allowed and torch.rand(()) < self.hard_negative_fraction:
            start = _uniform_in(allowed, float(torch.rand(())))
            window, kind, other = self._audio_window(entry, start, length), HARD, entry
        else:
            other_index = self._other_video(video, entry)
            other = self.entries[other_index]
            start = float(torch.rand(())) * max(other.duration - length, 0.0)
            window, kind = self._audio_window(other, start, length), EASY
        return {"audio_negative": window, "negative_kind": kind, "negative_has_audio": other.has_audio,
                "negative_start_s": start}

    def _other_video(self, video: int, entry: StoreEntry) -> int:
        """A random clip from another video (another clip at all when every clip shares one)."""
        n = len(self.entries)
        for _ in range(8):
            other = int(torch.randint(0, n, ()))
            if self.entries[other].youtube_id != entry.youtube_id:
                return other
        return (video + 1 + int(torch.randint(0, max(n - 1, 1), ()))) % n


def _uniform_in(intervals: list[tuple[float, float]], u: float) -> float:
    """The point at fraction ``u`` of the intervals' total length, walking them in order."""
    offset = u * sum(hi - lo for lo, hi in intervals)
    for lo, hi in intervals:
        if offset <= hi - lo:
            return lo + offset
        offset -= hi - lo
    return intervals[-1][1]
