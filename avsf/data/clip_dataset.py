"""The audiovisual clip dataset: Slow and Fast frames and the matching log-mel window.

For a clip of ``T x tau`` (Slow: T frames, one every tau) with Fast rate ``alpha``::

    store frames  |f0 f1 f2 ... f63|            one contiguous read of T * tau frames
    Fast          |f0 .. f2 .. f4 ...|          alpha * T frames, one every tau / alpha
    Slow          |f0 ....... f8 ...|           every alpha-th Fast frame (T frames)
    log-mel       [t0 ──────────── t1)          the same time span, resampled to spec_frames rows

That is ``temporal_sampling="strided"``; ``"pyslowfast"`` picks frames as PySlowFast does
(its ``temporal_sampling`` and ``pack_pathway_output``): the Fast frames at
``linspace(start, start + T * tau - 1, alpha * T)`` and the Slow frames at
``linspace(0, alpha * T - 1, T)`` of those, truncated to integers (Slow frames 0, 10, 20, 31
of 32 where strided takes 0, 8, 16, 24), which is what its checkpoints were trained on.

Time is shared by all three: frame k is shown from k / fps, log-mel row j is centred on
j / rows_per_second (plus the store's ``first_row_s``: half a window for unpadded STFT
frames, ``spectrogram.center: false``), and output row i of the audio window sits at
t0 + (i + 0.5) * (t1 - t0) / spec_frames. So a visual event and its sound land at the same
fraction of the clip.

Training (the papers' recipe): a random clip, short side drawn from ``train_scale``, a
random ``train_crop`` square, random horizontal flip. Test: ``test_clips`` uniform clips x
``test_crops`` crops (left/centre/right along the longer side) at ``test_scale``; item i is
video i // (clips * crops). Of ``n`` test clips, clip ``i`` starts at frame ``room * i / n``
(``room``: the frames a clip can start at after the first), PySlowFast's
``get_start_end_idx``; one test clip is the centre one (PySlowFast's rule would start it at
frame 0). Scale and crop are done as one crop in the stored frame plus
one resize of the crop (a :class:`View`). With ``test_full_frame`` a test view is the
whole frame, its short side resized to ``test_scale`` (AVA's fully convolutional test).

Boxes (AVA): a target with ``boxes`` (float [n, 4], x1 y1 x2 y2 normalised to the stored
frame) has them moved with the frames' own scale, crop and flip into output pixels,
clipped to the clip; a box left with no area is dropped together with its row of every
``box_*`` entry (``box_labels``, ``box_scores``), and ``box_normalised`` keeps the kept
boxes as the label source gave them (for writing results). :func:`collate_clips` batches
them as the detection head takes them: ``boxes`` [K, 5], the item's batch index first.

Audio-visual synchronisation: with ``sync_negatives`` each item also carries a negative
audio window, from another clip (easy) or from the same clip shifted by at least
``hard_negative_min_shift_s`` (hard, with probability ``hard_negative_fraction``; set it
between epochs for a curriculum, workers pick it up when they restart each epoch).

Rotation pretext (self-supervised pretraining, :mod:`avsf.data.rotation`): with
``rotation`` every item's Slow and Fast frames are turned by ``rotation`` (0-3) quarter
turns, drawn from the item's seed in training and fixed per item in test; audio is not.

Samples, labels and seeds: a *label source* (:class:`VideoLabels` for Kinetics) says which
frame range of which stored video is a sample and what its target is, so datasets whose
samples are segments of long videos (EPIC-Kitchens), several labels over time (Charades) or
keyframes (AVA) add a label source, not a dataset; a sample with a ``centre_frame`` (a
keyframe) has one clip, centred there (shifted to stay inside the sample at its ends). An
item is asked for by position or by a :class:`SampleKey` (index, seed, curriculum), whose
seed drives every random choice of that item: what an item holds then depends only on its
key, not on the DataLoader worker that loads it (exact resume, identical results with any
number of workers).

A sample that fails to load (an unreadable shard, a broken JPEG) is never fatal: in
training another sample, drawn from the same seed, takes its place; in test mode a blank
item with label -1 does. Either way the failure travels with the batch
(``load_failures``) for the caller to record and count, and each item says whether it holds
loaded data (``loaded``: False only for a test item's blank), so a test view that failed is
left out of the metrics even where a loaded one's label is -1 too (an unlabelled video).

Frames come out as uint8 (four times less to copy to the GPU); normalise them on the
device with :func:`normalize_video`. With ``decode_on="device"`` the workers hand over the
JPEG bytes and the crop instead, and :class:`DeviceFrameDecoder` decodes them on the GPU
(nvJPEG); batch such items with :func:`collate_clips`. Audio comes out normalised with the
statistics the spectrogram stage measured. A clip without audio, and a window of digital
silence (a muted upload's track: no log-mel value above ``audible_min_log_power``), get
the normalised mean (zeros), so they do not skew the audio pathway's batch statistics; a
clip without audio keeps ``has_audio`` False.
``audible`` (and ``negative_audible``) say whether a window carries sound the AV-sync task
can use, judged on the raw log-mel: the clip has audio, its mean log power is above
``audible_min_log_power`` and the normalised window's variance above
``audible_min_variance`` (the authors' rule; digital silence and near-silence fail it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from avsf.data.jpeg import decode_jpeg, jpeg_size
from avsf.data.logmel import SILENT_LOG_POWER
from avsf.data.rotation import rotate_clip, rotation_of
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
    test_full_frame: bool = False  # test views: the whole frame at test_scale, no crop (needs test_crops 1)
    spec_frames: int = 128
    hard_negative_min_shift_s: float = 0.5
    audible_min_log_power: float = SILENT_LOG_POWER  # mean raw log-mel power of an audible window
    audible_min_variance: float = 0.01  # of the normalised window (constant windows are silent)
    # strided: Fast every tau/alpha-th frame, Slow every alpha-th Fast one | pyslowfast: PySlowFast's
    # linspace picks (module docstring), what its checkpoints were trained on
    temporal_sampling: Literal["strided", "pyslowfast"] = "strided"

    def __post_init__(self) -> None:
        if self.stride % self.alpha:
            raise ValueError(f"stride (tau = {self.stride}) must be a multiple of alpha ({self.alpha})")
        if self.test_crops not in (1, 3):
            raise ValueError("test_crops must be 1 or 3")
        if self.test_full_frame and self.test_crops != 1:
            raise ValueError("test_full_frame takes the whole frame: test_crops must be 1")
        if self.temporal_sampling not in ("strided", "pyslowfast"):
            raise ValueError(f"temporal_sampling must be 'strided' or 'pyslowfast', not {self.temporal_sampling!r}")

    @property
    def span(self) -> int:
        """Frames of the store one clip covers."""
        return self.num_frames * self.stride

    @property
    def fast_stride(self) -> int:
        return self.stride // self.alpha

    def fast_frames(self, start: float, length: int) -> list[int]:
        """Store frames of the ``alpha * T`` Fast frames of a clip starting at frame ``start``
        of a video of ``length`` frames (past its end, its last frame again)."""
        count = self.alpha * self.num_frames
        if self.temporal_sampling == "pyslowfast":  # float32 linspace, as PySlowFast computes it
            index = torch.linspace(start, start + self.span - 1, count)
            return index.clamp(0, length - 1).long().tolist()
        first = int(start)
        return [min(first + j * self.fast_stride, length - 1) for j in range(count)]

    def slow_of_fast(self) -> list[int]:
        """Which of the Fast frames are the T Slow frames."""
        count = self.alpha * self.num_frames
        if self.temporal_sampling == "pyslowfast":
            return torch.linspace(0, count - 1, self.num_frames).long().tolist()
        return list(range(0, count, self.alpha))


@dataclass(frozen=True)
class SampleKey:
    """What a sampler hands the dataset: the sample, the seed of every random choice made
    for it, and the curriculum's share of hard sync negatives at this point of training."""

    index: int
    seed: int
    hard_negative_fraction: float | None = None  # None: the dataset's own setting


@dataclass(frozen=True)
class Sample:
    """Frames ``[start_frame, stop_frame)`` of one stored video, and their target. With
    ``centre_frame`` (AVA's keyframe) the sample's clip is the one centred on that frame,
    in training and test alike, shifted to stay inside ``[start_frame, stop_frame)``."""

    entry: StoreEntry
    start_frame: int
    stop_frame: int
    target: dict[str, Any] = field(default_factory=dict)
    centre_frame: int | None = None


class LabelSource(Protocol):
    """A dataset's annotations: the samples of a split's stored videos, and the target of
    the frames a clip of a sample covers (labels active in that window, boxes at its
    keyframe, ...)."""

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]: ...

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]: ...

    def blank(self) -> dict[str, Any]:
        """The target of a test item that could not be loaded (left out of the metrics)."""
        ...


class VideoLabels:
    """Kinetics: each stored clip is one sample, its whole length, labelled with the index of
    its class name in ``classes`` (-1 for an unlabelled or unknown one) whatever the window."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self._index = {name: i for i, name in enumerate(self.classes)}

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]:
        return [Sample(e, 0, e.num_frames, {"label": self._index.get(e.label, -1)}) for e in entries]

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]:  # noqa: ARG002
        return sample.target

    def blank(self) -> dict[str, Any]:
        return {"label": -1}


class LoadFailed(RuntimeError):
    """No sample could be loaded in ``max_load_attempts`` tries."""


def normalize_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, T, H, W] -> float, (x / 255 - mean) / std per channel; run it on the GPU."""
    shape = (3, 1, 1, 1)
    mean = torch.tensor(VIDEO_MEAN, device=frames.device).view(shape)
    std = torch.tensor(VIDEO_STD, device=frames.device).view(shape)
    return (frames.float() / 255 - mean) / std


def crop_resize_flip(frames: torch.Tensor, box: tuple[int, ...], size: int | tuple[int, int], flip: bool
                     ) -> torch.Tensor:
    """uint8 [T, 3, H, W] -> uint8 [3, T, h, w]: the square ``box`` (top, left, side) or the
    rectangle (top, left, height, width), resized to ``size`` (side, or (h, w); bilinear,
    antialiased when shrinking), mirrored when ``flip``."""
    top, left, height, width = box if len(box) == 4 else (*box, box[2])
    out = (size, size) if isinstance(size, int) else tuple(size)
    frames = frames[:, :, top : top + height, left : left + width]
    if (height, width) != out:
        shrink = height > out[0] or width > out[1]
        if frames.is_cuda:  # CUDA's bilinear resize takes floating point only
            frames = F.interpolate(frames.float(), size=out, mode="bilinear", align_corners=False,
                                   antialias=shrink).round_().clamp_(0, 255).to(torch.uint8)
        else:
            frames = F.interpolate(frames, size=out, mode="bilinear", align_corners=False, antialias=shrink)
    if flip:
        frames = frames.flip(-1)
    return frames.permute(1, 0, 2, 3).contiguous()


@dataclass(frozen=True)
class View:
    """Where a clip's pixels come from: ``region`` (top, left, height, width) of the stored
    frame (``frame``: height, width), resized to ``size`` (height, width), then mirrored
    when ``flip``. Boxes take the same way (:meth:`place`)."""

    frame: tuple[int, int]
    region: tuple[int, int, int, int]
    size: tuple[int, int]
    flip: bool = False

    def place(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (x1, y1, x2, y2) boxes [n, 4] of the stored frame -> float32 [n, 4] in
        output pixels (clipped to the output), and which keep an area there (bool [n])."""
        (frame_h, frame_w), (top, left, height, width), (out_h, out_w) = self.frame, self.region, self.size
        b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        x = ((b[:, 0::2] * frame_w - left) * (out_w / width)).clamp(0, out_w)  # x1, x2
        y = ((b[:, 1::2] * frame_h - top) * (out_h / height)).clamp(0, out_h)  # y1, y2
        if self.flip:  # pixel column c goes to out_w - 1 - c: x to out_w - x, so x1 and x2 swap
            x = out_w - x.flip(1)
        keep = (x[:, 1] > x[:, 0]) & (y[:, 1] > y[:, 0])
        return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1).float(), keep


def place_boxes(target: dict[str, Any], view: View) -> dict[str, Any]:
    """``target`` with its ``boxes`` in ``view``'s output pixels; boxes left without an area
    dropped with their rows of every ``box_*`` entry; ``box_normalised``: the kept boxes as
    given (see the module docstring)."""
    given = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    placed, keep = view.place(given)
    out = {k: v[keep] if k.startswith("box_") else v for k, v in target.items()}
    out.update(boxes=placed[keep], box_normalised=given[keep])
    return out


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, except that each item's ``fast_jpegs`` (decode_on="device") stay
    a list of 1-D uint8 tensors (they differ in length) and the items' ``load_failures``
    are joined into one list of dicts (every failed attempt, replacements included), with
    ``failed_samples`` the number of items that did not load their own sample. Items with
    ``boxes``: ``boxes`` [K, 5] (the item's position in the batch, then x1, y1, x2, y2) and
    every ``box_*`` entry concatenated over the items, and frames of different sizes
    (whole-frame test views) padded with zeros at the bottom and right to the largest
    (boxes keep their pixels)."""
    jpegs = [item.pop("fast_jpegs") for item in items] if "fast_jpegs" in items[0] else None
    per_item = [item.pop("load_failures", ()) for item in items]
    failures = [f for item_failures in per_item for f in item_failures]
    boxes = _collate_boxes(items) if "boxes" in items[0] else {}
    if boxes:
        _pad_frames(items)
    batch = default_collate(items)
    if jpegs is not None:
        batch["fast_jpegs"] = jpegs
    batch.update(boxes)
    batch["load_failures"] = failures
    batch["failed_samples"] = sum(1 for item_failures in per_item if item_failures)
    return batch


def _collate_boxes(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pops ``boxes`` and the ``box_*`` entries off the items; returns them concatenated."""
    keys = [k for k in items[0] if k == "boxes" or k.startswith("box_")]
    parts = {k: [item.pop(k) for item in items] for k in keys}
    batch = {k: torch.cat(v) for k, v in parts.items()}
    index = torch.cat([torch.full((len(b), 1), float(i)) for i, b in enumerate(parts["boxes"])])
    batch["boxes"] = torch.cat([index, batch["boxes"]], dim=1)
    return batch


def _pad_frames(items: list[dict[str, Any]]) -> None:
    """Pads every item's ``slow`` and ``fast`` [3, T, h, w] to the batch's largest h and w."""
    for key in ("slow", "fast"):
        if key not in items[0]:
            continue
        height = max(item[key].shape[-2] for item in items)
        width = max(item[key].shape[-1] for item in items)
        for item in items:
            x = item[key]
            if x.shape[-2:] != (height, width):
                item[key] = F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


class DeviceFrameDecoder:
    """Finishes batches of a ClipDataset with decode_on="device" where the model runs::

        fast_jpegs (B lists of alpha*T JPEGs), box, flip
            ──decode (nvJPEG through torchvision on CUDA; simplejpeg on the CPU)──>
            ──crop_resize_flip──> fast [B, 3, alpha*T, S, S] uint8, slow = the Slow ones of them

    so DataLoader workers only read bytes and the GPU does the pixel work.
    """

    def __init__(self, sampling: ClipSampling, size: int, device: str | torch.device = "cuda"):
        self.slow = torch.tensor(sampling.slow_of_fast())
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
        batch["slow"] = batch["fast"][:, :, self.slow.to(batch["fast"].device)].contiguous()
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
        labels: LabelSource | None = None,
        max_load_attempts: int = 10,
        max_open_shards: int = 64,
        rotation: bool = False,
    ):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', not {mode!r}")
        if decode_on not in ("worker", "device"):
            raise ValueError(f"decode_on must be 'worker' or 'device', not {decode_on!r}")
        if rotation and decode_on == "device":
            raise ValueError("rotation turns the decoded frames: it needs decode_on='worker'")
        if mode == "test" and sampling.test_full_frame and decode_on == "device":
            raise ValueError("test_full_frame views differ in size: they need decode_on='worker'")
        self.rotation = rotation
        self.decode_on = decode_on
        self.reader = StoreReader(frames_dir, logmel_dir, max_open_shards=max_open_shards)
        self.classes = self.reader.classes()
        self.labels = labels or VideoLabels(self.classes)
        self.samples: list[Sample] = self.labels.samples([e for e in self.reader.entries if e.split == split])
        self.mode = mode
        self.sampling = sampling
        self.sync_negatives = sync_negatives
        self.hard_negative_fraction = hard_negative_fraction
        self.max_load_attempts = max_load_attempts
        self.audio = logmel_dir is not None
        if self.audio:
            stats = self.reader.stats()
            self.mean, self.std = float(stats["mean"]), float(stats["std"])
            self._audio_layout: tuple[float, int, float] | None = None  # rows per second, mel bins, row 0's time

    @property
    def entries(self) -> list[StoreEntry]:
        """The stored video of each sample."""
        return [s.entry for s in self.samples]

    def __len__(self) -> int:
        if self.mode == "train":
            return len(self.samples)
        return len(self.samples) * self.sampling.test_clips * self.sampling.test_crops

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """Item ``key`` (a position, or a :class:`SampleKey`). A position draws its seed from
        torch's global RNG in training, so ``torch.manual_seed`` fixes what it gives."""
        if isinstance(key, SampleKey):
            index, seed, hard = key.index, key.seed, key.hard_negative_fraction
        else:
            index, seed, hard = int(key), None, None
        if self.mode == "train" and seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        hard = self.hard_negative_fraction if hard is None else hard
        failures: list[dict[str, str]] = []
        for _ in range(self.max_load_attempts):
            try:
                item = self._item(index, rng, hard)
                break
            except (OSError, KeyError, ValueError, RuntimeError) as exc:  # a broken shard, group or JPEG
                failures.append(self._failure(index, exc))
                if self.mode != "train":
                    item = self._blank_item(index)
                    break
                index = int(torch.randint(0, len(self.samples), (), generator=rng))
        else:
            raise LoadFailed(f"{self.max_load_attempts} samples in a row failed to load; last: "
                             f"{failures[-1]['id']}: {failures[-1]['detail']}")
        item["load_failures"] = failures
        return item

    def _item(self, index: int, rng: torch.Generator | None, hard: float) -> dict[str, Any]:
        s = self.sampling
        if self.mode == "train":
            video, clip, crop = index, -1, -1
        else:
            per_video = s.test_clips * s.test_crops
            video, clip, crop = index // per_video, (index % per_video) // s.test_crops, index % s.test_crops
        sample = self.samples[video]
        entry = sample.entry
        start = self._start_frame(sample, clip, rng)
        frames, view = self._frames(entry, start, crop, rng)
        target = self.labels.target(sample, int(start), int(start) + s.span)
        if "boxes" in target:  # a detection target: its boxes go where the frames' pixels went
            target = place_boxes(target, view)
        item: dict[str, Any] = {
            **frames,
            **target,
            "index": video,
            "clip": clip,
            "crop": crop,
            "start_s": start / entry.fps,
            "loaded": True,
        }
        if self.rotation:  # the pretext: the clip turned by 0-3 quarter turns, drawn from the item's key
            turns = rotation_of(self._rotation_seed(rng), index)
            item.update(slow=rotate_clip(item["slow"], turns), fast=rotate_clip(item["fast"], turns), rotation=turns)
        if self.audio:
            t0, length = start / entry.fps, s.span / entry.fps
            item["audio"], item["audible"] = self._audio_window(entry, t0, length, with_audible=True)
            item["has_audio"] = entry.has_audio
            if self.sync_negatives:
                item.update(self._negative(video, entry, t0, length, rng, hard))
        return item

    @staticmethod
    def _rotation_seed(rng: torch.Generator | None) -> int:
        """Training: the item's own seed (every epoch a new turn); test: 0 (the same every time)."""
        return rng.initial_seed() if rng is not None else 0

    def _failure(self, index: int, exc: Exception) -> dict[str, str]:
        per_video = 1 if self.mode == "train" else self.sampling.test_clips * self.sampling.test_crops
        return {"id": self.samples[index // per_video].entry.clip_id, "reason": "load_failed",
                "detail": f"{type(exc).__name__}: {exc}"}

    def _blank_item(self, index: int) -> dict[str, Any]:
        """What a test item that could not be loaded looks like: zeros, label -1."""
        s = self.sampling
        per_video = s.test_clips * s.test_crops
        size = s.test_scale if s.test_full_frame else s.test_crop
        fast = torch.zeros(3, s.alpha * s.num_frames, size, size, dtype=torch.uint8)
        target = self.labels.blank()
        if "boxes" in target:
            target = place_boxes(target, View((size, size), (0, 0, size, size), (size, size)))
        item: dict[str, Any] = {"slow": fast[:, s.slow_of_fast()].clone(), "fast": fast,
                                **target, "index": index // per_video,
                                "clip": (index % per_video) // s.test_crops, "crop": index % s.test_crops,
                                "start_s": 0.0, "loaded": False}
        if self.rotation:
            item["rotation"] = rotation_of(0, index)
        if self.decode_on == "device":
            raise LoadFailed("a test sample failed to load with decode_on='device'")
        if self.audio:
            item.update(audio=torch.zeros(1, s.spec_frames, self._mel_bins()), audible=False, has_audio=False)
            if self.sync_negatives:
                item.update(audio_negative=item["audio"].clone(), negative_kind=EASY, negative_has_audio=False,
                            negative_audible=False, negative_start_s=0.0)
        return item

    # ------------------------------------------------------------------ time

    def _start_frame(self, sample: Sample, clip: int, rng: torch.Generator | None) -> float:
        """The clip's first frame: a whole frame, except a test start of PySlowFast's picks,
        which may lie between frames (room * i / n), as PySlowFast's linspace starts."""
        s = self.sampling
        if sample.centre_frame is not None:  # centred on the keyframe, inside the sample
            latest = max(sample.stop_frame - s.span, sample.start_frame)
            return min(max(sample.centre_frame - s.span // 2, sample.start_frame), latest)
        room = max(sample.stop_frame - sample.start_frame - s.span, 0)
        if clip < 0:
            return sample.start_frame + int(torch.randint(0, room + 1, (), generator=rng))
        # PySlowFast's uniform clips: clip i of n starts at room * i / n; a single clip, centred
        offset = room * clip / s.test_clips if s.test_clips > 1 else room / 2
        start = sample.start_frame + offset
        return start if s.temporal_sampling == "pyslowfast" else int(start)

    # ------------------------------------------------------------------ frames

    def _frames(self, entry: StoreEntry, start: float, crop: int, rng: torch.Generator | None
                ) -> tuple[dict[str, Any], View]:
        """Slow and Fast uint8 [3, frames, size, size] from one contiguous read of the span
        (the Fast frames of ``sampling.fast_frames`` kept); with decode_on="device", the Fast
        frames' JPEGs and the crop instead, for :class:`DeviceFrameDecoder`. And the view
        they were cut by."""
        s = self.sampling
        first = int(start)
        jpegs = self.reader.frames(entry, first, first + s.span)
        # Within the read; a clip shorter than the span repeats its last frame
        picks = [p - first for p in s.fast_frames(start, first + len(jpegs))]
        view = self._view(*jpeg_size(jpegs[0]), crop, rng)
        if self.decode_on == "device":
            return {"fast_jpegs": [torch.from_numpy(jpegs[p]) for p in picks], "box": torch.tensor(view.region[:3]),
                    "flip": view.flip}, view
        decoded = {p: decode_jpeg(jpegs[p]) for p in dict.fromkeys(picks)}
        top, left, height, width = view.region
        batch = np.stack([decoded[p][top : top + height, left : left + width] for p in picks])
        fast = crop_resize_flip(torch.from_numpy(batch).permute(0, 3, 1, 2), (0, 0, height, width), view.size,
                                view.flip)
        return {"slow": fast[:, s.slow_of_fast()].contiguous(), "fast": fast}, view

    def _view(self, height: int, width: int, crop: int, rng: torch.Generator | None) -> View:
        """How a stored frame of ``height`` x ``width`` becomes crop ``crop`` of a test clip,
        or (crop -1) a training clip: random scale, crop and flip."""
        s = self.sampling
        if crop < 0:
            (top, left, side), size = self._train_box(height, width, rng)
            flip = s.flip and bool(torch.rand((), generator=rng) < 0.5)
            return View((height, width), (top, left, side, side), (size, size), flip)
        if s.test_full_frame:  # the short side to test_scale, the long one in proportion
            short = min(height, width)
            size = (round(height * s.test_scale / short), round(width * s.test_scale / short))
            return View((height, width), (0, 0, height, width), size)
        (top, left, side), size = self._test_box(height, width, crop)
        return View((height, width), (top, left, side, side), (size, size))

    def _train_box(self, height: int, width: int, rng: torch.Generator | None = None
                   ) -> tuple[tuple[int, int, int], int]:
        """A random square of the stored frame that becomes ``train_crop`` pixels once the short
        side is scaled to a size drawn from ``train_scale``."""
        s = self.sampling
        low, high = s.train_scale
        scale = int(torch.randint(low, high + 1, (), generator=rng)) / min(height, width)
        side = min(round(s.train_crop / scale), height, width)
        top = int(torch.randint(0, height - side + 1, (), generator=rng))
        left = int(torch.randint(0, width - side + 1, (), generator=rng))
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

    def _audio_window(self, entry: StoreEntry, t0: float, length: float, with_audible: bool = False
                      ) -> torch.Tensor | tuple[torch.Tensor, bool]:
        """Normalised float32 [1, spec_frames, n_mels] covering [t0, t0 + length) (and, with
        ``with_audible``, whether it is audible: see the module docstring)."""
        rate, mels, first_row_s = self._layout(entry)
        frames = self.sampling.spec_frames
        if not entry.has_audio:  # the normalised mean: no skew of the audio BN statistics
            window = torch.zeros(1, frames, mels)
            return (window, False) if with_audible else window
        # Output row i sits at t0 + (i + 0.5) * length / frames; in log-mel rows, counted from row 0's time.
        centres = (t0 + (np.arange(frames) + 0.5) * length / frames - first_row_s) * rate
        first = max(int(np.floor(centres[0])), 0)
        rows = self.reader.logmel(entry, first, int(np.ceil(centres[-1])) + 2).astype(np.float32)
        position = np.clip(centres - first, 0, len(rows) - 1)
        low = np.minimum(np.floor(position).astype(np.int64), len(rows) - 1)
        high = np.minimum(low + 1, len(rows) - 1)
        weight = (position - low)[:, None].astype(np.float32)
        raw = rows[low] * (1 - weight) + rows[high] * weight
        s = self.sampling
        if raw.max() <= s.audible_min_log_power:  # digital silence (a muted upload): as no audio
            window = torch.zeros(1, frames, mels)
            return (window, False) if with_audible else window
        window = torch.from_numpy((raw - self.mean) / self.std).unsqueeze(0)
        if not with_audible:
            return window
        audible = bool(raw.mean() > s.audible_min_log_power and window.var() > s.audible_min_variance)
        return window, audible

    def _layout(self, entry: StoreEntry) -> tuple[float, int, float]:
        """(log-mel rows per second, mel bins, the second row 0 is centred on), read once from
        a clip's attributes (stores without ``first_row_s`` are centred: 0)."""
        if self._audio_layout is None:
            attrs = self.reader.attrs(entry, store=LOGMEL)
            self._audio_layout = (float(attrs["frames_per_second"]), int(attrs["n_mels"]),
                                  float(attrs.get("first_row_s", 0.0)))
        return self._audio_layout

    def _mel_bins(self) -> int:
        """Mel bins of the store, from the first sample whose attributes can be read."""
        for sample in self.samples:
            try:
                return self._layout(sample.entry)[1]
            except (OSError, KeyError):
                continue
        raise LoadFailed("no sample of the log-mel store can be read")

    def _negative(self, video: int, entry: StoreEntry, t0: float, length: float, rng: torch.Generator | None,
                  hard_fraction: float) -> dict[str, Any]:
        """An out-of-sync audio window: same clip shifted (hard) or another clip (easy)."""
        shift = self.sampling.hard_negative_min_shift_s
        latest = max(entry.duration - length, 0.0)
        # Starts at least `shift` before or after t0 that keep the window inside the clip.
        allowed = [(lo, hi) for lo, hi in ((0.0, t0 - shift), (t0 + shift, latest)) if lo <= hi]
        if allowed and torch.rand((), generator=rng) < hard_fraction:
            start = _uniform_in(allowed, float(torch.rand((), generator=rng)))
            (window, audible), kind, other = self._audio_window(entry, start, length, True), HARD, entry
        else:
            other = self.samples[self._other_video(video, entry, rng)].entry
            start = float(torch.rand((), generator=rng)) * max(other.duration - length, 0.0)
            (window, audible), kind = self._audio_window(other, start, length, True), EASY
        return {"audio_negative": window, "negative_kind": kind, "negative_has_audio": other.has_audio,
                "negative_audible": audible, "negative_start_s": start}

    def _other_video(self, video: int, entry: StoreEntry, rng: torch.Generator | None) -> int:
        """A random sample from another video (another sample at all when every one shares one)."""
        n = len(self.samples)
        for _ in range(8):
            other = int(torch.randint(0, n, (), generator=rng))
            if self.samples[other].entry.youtube_id != entry.youtube_id:
                return other
        return (video + 1 + int(torch.randint(0, max(n - 1, 1), (), generator=rng))) % n


def _uniform_in(intervals: list[tuple[float, float]], u: float) -> float:
    """The point at fraction ``u`` of the intervals' total length, walking them in order."""
    offset = u * sum(hi - lo for lo, hi in intervals)
    for lo, hi in intervals:
        if offset <= hi - lo:
            return lo + offset
        offset -= hi - lo
    return intervals[-1][1]
