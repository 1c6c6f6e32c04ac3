"""The UCF101 and HMDB51 flavours of the demo world: short trimmed clips in the datasets' own
layouts and split files, for the linear probe after self-supervised pretraining (issue 14).

Their classes are none of the Kinetics demo's (by name and by look: shape, colour, sound,
pitch and flicker), so that a probe on features pretrained on the Kinetics demo measures
what transfers, not what was memorised. They cover the same cues (world.py): appearance
(new shapes and colours, clicking alike), motion (a pair alike but for how it moves: a
3.75 Hz flicker, a rise, a fall, a sway), sound (a pair alike but for its new pitch or kind
of sound) and audiovisual (a new look with a new, synchronised sound). A video is one
actor of its class for its whole length.

UCF101 flavour (25 fps, as UCF101)::

    <out_dir>/videos/<Class>/v_<Class>_g<GG>_c<CC>.avi
    <out_dir>/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt   (CRLF)

A group's clips come from one long video (one background); split k tests on groups
``(k-1)*test_groups+1 ... k*test_groups`` and trains on the others, as UCF101's three splits
take groups 1-7, 8-14, 15-21 of 25 out. ``HandstandPushups`` keeps UCF101's quirk: its
files are ``v_HandStandPushups_*`` (the case differs from the class list's).

HMDB51 flavour (30 fps, as HMDB51)::

    <out_dir>/videos/<class>/<source>_<class>_<body>_<camera>_np1_<view>_<quality>_<k>.avi
    <out_dir>/<class>_test_split{1,2,3}.txt     <video>.avi <1 train | 2 test | 0 unused>

Each split is its own random partition of every class's videos. The split files lie beside
``videos/`` (the datasets put them in a folder of their own): the stage reading them
(download, through DVC) then depends on the whole world, so a change to the videos alone
(light, the renderer) makes the clips again. Files are AVI with
MPEG-4 Part 2 video (what both datasets hold) and 16-bit PCM audio (exactly in sync: AVI
cannot say where AAC's priming ends); everything is deterministic in the spec's seed, and
the split files come from avsf.data.ucf_hmdb's writers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from avsf.data.demo.world import FLICKER_HZ, DemoClass, Movement, Scene, check_light, encode_scene, placed_actor
from avsf.data.ucf_hmdb import (
    HMDB_SPLITS,
    HmdbVideo,
    UcfVideo,
    ucf_video,
    write_hmdb_split,
    write_ucf_classes,
    write_ucf_split,
)
from avsf.io.atomic import atomic_output

SPLITS = HMDB_SPLITS  # (1, 2, 3): both datasets have three
TRAIN, TEST, UNUSED = 1, 2, 0  # a video's tag in a split (HMDB51's numbers)
SLOW_FLICKER_HZ = FLICKER_HZ / 2  # 3.75 Hz: at 30 fps still constant at stride 16 (2 periods), plain at stride 2
ACTOR_SIZE = (0.3, 0.42)  # the shape's side, in frame heights
SWAY_TRAVEL = 0.12  # a sway's amplitude, in frame heights
LIFT_TRAVEL = (0.15, 0.25)  # how far a rise lifts, or a fall lowers, in frame heights


@dataclass(frozen=True)
class ProbeClass:
    """A class of the flavours: its look and sound (``look``), how it moves, and for UCF the
    file names' spelling of its name where it differs in case (``file_name``)."""

    look: DemoClass
    movement: Movement = "still"
    file_name: str | None = None

    @property
    def name(self) -> str:
        return self.look.name

    @property
    def cue(self) -> str:
        return self.look.cue


_CYAN_DISK = DemoClass("", "motion", "disk", (60, 200, 220), "click")
_GREY_DISK = DemoClass("", "sound", "disk", (150, 150, 150), "tone")
# In classInd.txt order: alphabetical, as UCF101's.
UCF_CLASSES: tuple[ProbeClass, ...] = (
    ProbeClass(replace(_GREY_DISK, name="BlowHorn", pitch_hz=500.0)),
    ProbeClass(DemoClass("HammerNail", "audiovisual", "bar", (110, 130, 170), "noise", pulse="jump")),
    ProbeClass(replace(_CYAN_DISK, name="HandstandPushups"), "rise", file_name="HandStandPushups"),
    ProbeClass(DemoClass("PaintFence", "appearance", "square", (150, 60, 200), "click")),
    ProbeClass(DemoClass("PlayFlute", "audiovisual", "bar", (230, 120, 170), "chirp", pulse="jump", pitch_hz=700.0)),
    ProbeClass(replace(_GREY_DISK, name="RingBell", pitch_hz=2000.0)),
    ProbeClass(DemoClass("RollBall", "appearance", "disk", (230, 200, 40), "click")),
    ProbeClass(replace(_CYAN_DISK, name="SignalTorch", flicker_hz=SLOW_FLICKER_HZ)),
)

_TEAL_SQUARE = DemoClass("", "motion", "square", (40, 160, 140), "click")
_VIOLET_SQUARE = DemoClass("", "sound", "square", (100, 70, 150), "click")
# Sorted, as hmdb_classes reads them back (class i is the i-th).
HMDB_CLASSES: tuple[ProbeClass, ...] = (
    ProbeClass(DemoClass("fold_towel", "appearance", "square", (235, 235, 235), "click")),
    ProbeClass(replace(_VIOLET_SQUARE, name="hum_song", sound="tone", pitch_hz=350.0)),
    ProbeClass(replace(_VIOLET_SQUARE, name="knock_door", sound="noise")),
    ProbeClass(replace(_TEAL_SQUARE, name="lower_box"), "fall"),
    ProbeClass(DemoClass("strum_guitar", "audiovisual", "bar", (150, 90, 40), "chirp", pulse="jump", pitch_hz=600.0)),
    ProbeClass(replace(_TEAL_SQUARE, name="wave_hand"), "sway"),
)
# HMDB51's file names: the film a clip is cut from, then what the clip shows (one "!" as some real names have).
HMDB_SOURCES = ("Sunday_Picnic", "The_Long_Road", "Kitchen_Tales_2", "Home_Movies!", "Old_Friends")
HMDB_BODY, HMDB_CAMERA = ("f", "u", "l", "h"), ("cm", "nm")
HMDB_VIEW, HMDB_QUALITY = ("fr", "ba", "le", "ri"), ("goo", "med", "bad")


def ucf_cue_groups() -> dict[str, str]:
    """UCF flavour class name -> the cue that identifies it (as world.demo_cue_groups)."""
    return {c.name: c.cue for c in UCF_CLASSES}


def hmdb_cue_groups() -> dict[str, str]:
    """HMDB flavour class name -> the cue that identifies it (as world.demo_cue_groups)."""
    return {c.name: c.cue for c in HMDB_CLASSES}


@dataclass(frozen=True)
class UcfWorldSpec:
    """How big the UCF flavour is: ``groups`` groups of ``clips_per_group`` clips per class
    (UCF101: 25 groups of 4-7), split k testing on ``test_groups`` groups of them (UCF101: 7);
    groups past ``3 * test_groups`` are always trained on (UCF101's 22-25)."""

    seed: int = 0
    groups: int = 6
    clips_per_group: int = 2
    test_groups: int = 2
    video_seconds: tuple[float, float] = (3.0, 4.0)
    sizes: Sequence[tuple[int, int]] = ((160, 120),)
    fps: float = 25.0
    sample_rate: int = 22050  # PCM: 44 kB a second (the default worlds: 26 MB of sound, 5 MB of pictures)
    channels: int = 1
    light: float = 0.0  # light from above on the actors (world.Scene.light), as the Kinetics flavour's

    def __post_init__(self) -> None:
        check_light(self.light)


@dataclass(frozen=True)
class HmdbWorldSpec:
    """How big the HMDB flavour is: per class ``videos_per_class`` videos, of which each split
    trains on ``train_videos`` and tests on ``test_videos`` (HMDB51: 70 and 30), the rest unused."""

    seed: int = 0
    videos_per_class: int = 12
    train_videos: int = 7
    test_videos: int = 3
    video_seconds: tuple[float, float] = (3.0, 4.0)
    sizes: Sequence[tuple[int, int]] = ((160, 120), (176, 120))
    fps: float = 30.0
    sample_rate: int = 22050  # PCM: 44 kB a second (the default worlds: 26 MB of sound, 5 MB of pictures)
    channels: int = 1
    light: float = 0.0  # light from above on the actors (world.Scene.light), as the Kinetics flavour's

    def __post_init__(self) -> None:
        check_light(self.light)


@dataclass(frozen=True)
class ProbeVideo:
    """One planned video of either flavour: its row of the split files (the readers' own type),
    its tag in each of the three splits (``tags[k - 1]``: TRAIN, TEST or UNUSED) and its scene."""

    row: UcfVideo | HmdbVideo
    tags: tuple[int, int, int]
    scene: Scene

    @property
    def path(self) -> str:
        """Where the video lies under ``<out_dir>/videos`` (the split files' own path)."""
        return self.row.path

    @property
    def video_id(self) -> str:
        return self.row.video_id

    @property
    def label(self) -> int:
        return self.row.label


def split_rows(plan: Sequence[ProbeVideo], split: int) -> dict[int, list[UcfVideo | HmdbVideo]]:
    """Split ``split``'s rows by tag (TRAIN, TEST, UNUSED), each in plan order."""
    if split not in SPLITS:
        raise ValueError(f"the splits are 1, 2 and 3, not {split!r}")
    rows: dict[int, list] = {TRAIN: [], TEST: [], UNUSED: []}
    for video in plan:
        rows[video.tags[split - 1]].append(video.row)
    return rows


# --------------------------------------------------------------------------- planning


def ucf_test_groups(spec: UcfWorldSpec, split: int) -> tuple[int, ...]:
    """The groups split ``split`` (1-3) tests on."""
    return tuple(range((split - 1) * spec.test_groups + 1, split * spec.test_groups + 1))


def plan_ucf_world(spec: UcfWorldSpec) -> list[ProbeVideo]:
    """Every clip, class by class (classInd order), group by group, clip by clip (the split
    files' order), deterministic in ``spec``: each group has its own RNG (its background),
    each clip its own (its actor)."""
    if spec.groups < 3 * spec.test_groups or spec.test_groups < 1:
        raise ValueError(f"{spec.groups} groups cannot give 3 splits {spec.test_groups} test groups each")
    testing = {g: k for k in SPLITS for g in ucf_test_groups(spec, k)}
    videos = []
    for label, cls in enumerate(UCF_CLASSES):
        for group in range(1, spec.groups + 1):
            index = label * spec.groups + group - 1
            room = np.random.default_rng([spec.seed, 0x0C, index])
            background = dict(seed=spec.seed * 100_003 + 80_000 + index, tint=_tint(room),
                              size=spec.sizes[room.integers(len(spec.sizes))])
            tags = tuple(TEST if testing.get(group) == k else TRAIN for k in SPLITS)
            for clip in range(1, spec.clips_per_group + 1):
                rng = np.random.default_rng([spec.seed, 0x0D, index, clip])
                row = ucf_video(cls.name, group, clip, label, cls.file_name)
                videos.append(ProbeVideo(row, tags, _scene(spec, rng, cls, **background)))
    return videos


def plan_hmdb_world(spec: HmdbWorldSpec) -> list[ProbeVideo]:
    """Every video, class by class (sorted), deterministic in ``spec``: each video has its own
    RNG, each class and split one for the split's partition."""
    if spec.train_videos + spec.test_videos > spec.videos_per_class:
        raise ValueError(f"{spec.train_videos} train + {spec.test_videos} test videos per split "
                         f"exceed {spec.videos_per_class} videos per class")
    videos = []
    for label, cls in enumerate(HMDB_CLASSES):
        tags = np.stack([_partition(spec, label, k) for k in SPLITS], axis=1)
        from_source = dict.fromkeys(HMDB_SOURCES, 0)  # clips so far of each film in this class
        for k in range(spec.videos_per_class):
            index = label * spec.videos_per_class + k
            rng = np.random.default_rng([spec.seed, 0x4D, index])
            source = HMDB_SOURCES[rng.integers(len(HMDB_SOURCES))]
            name = "_".join((source, cls.name, *(str(rng.choice(c)) for c in (HMDB_BODY, HMDB_CAMERA)), "np1",
                             *(str(rng.choice(c)) for c in (HMDB_VIEW, HMDB_QUALITY)), str(from_source[source])))
            from_source[source] += 1
            scene = _scene(spec, rng, cls, seed=spec.seed * 100_003 + 90_000 + index, tint=_tint(rng),
                           size=spec.sizes[rng.integers(len(spec.sizes))])
            videos.append(ProbeVideo(HmdbVideo(f"{cls.name}/{name}.avi", name, label),
                                     tuple(int(t) for t in tags[k]), scene))
    return videos


def _partition(spec: HmdbWorldSpec, label: int, split: int) -> np.ndarray:
    """Each of a class's videos' tag in ``split``: a random ``train_videos`` of them TRAIN,
    ``test_videos`` TEST, the rest UNUSED."""
    order = np.random.default_rng([spec.seed, 0x5B, label, split]).permutation(spec.videos_per_class)
    tags = np.full(spec.videos_per_class, UNUSED)
    tags[order[: spec.train_videos]] = TRAIN
    tags[order[spec.train_videos : spec.train_videos + spec.test_videos]] = TEST
    return tags


def _tint(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0.3, 0.7, size=3))


def _scene(spec: UcfWorldSpec | HmdbWorldSpec, rng: np.random.Generator, cls: ProbeClass, seed: int,
           tint: tuple[float, float, float], size: tuple[int, int]) -> Scene:
    """A clip of ``cls``'s actor for the whole of it, placed where its movement stays in view."""
    duration = round(float(rng.uniform(*spec.video_seconds)) * spec.fps) / spec.fps  # whole frames: the sound as long
    width, height = (int(v) for v in size)
    travel = {"rise": float(rng.uniform(*LIFT_TRAVEL)), "fall": float(rng.uniform(*LIFT_TRAVEL)),
              "sway": SWAY_TRAVEL}.get(cls.movement, 0.0)
    actor = placed_actor(rng, cls.look, 0.0, duration, width, height, float(rng.uniform(*ACTOR_SIZE)),
                         cls.movement, travel)
    return Scene(width=width, height=height, fps=spec.fps, duration=duration, actors=(actor,), seed=seed,
                 tint=tint, sample_rate=spec.sample_rate, channels=spec.channels, light=spec.light)


# --------------------------------------------------------------------------- writing


def write_probe_video(video: ProbeVideo, videos_dir: str | os.PathLike) -> Path:
    """Render and encode one video of either flavour at ``videos_dir / video.path``: AVI of
    MPEG-4 Part 2 video and PCM audio (see avsf.io.media: both start exactly at 0 in AVI)."""
    path = Path(videos_dir) / video.path
    with atomic_output(path) as tmp:
        encode_scene(video.scene, tmp, codec="mpeg4", audio_codec="pcm_s16le")
    return path


def write_ucf_annotations(out_dir: str | os.PathLike, plan: Sequence[ProbeVideo]) -> None:
    """``classInd.txt``, ``trainlist0{1,2,3}.txt`` (with labels) and ``testlist0{1,2,3}.txt``
    (without), with the readers' own writers (CRLF, as UCF101's)."""
    split_dir = Path(out_dir)
    write_ucf_classes(split_dir / "classInd.txt", [c.name for c in UCF_CLASSES])
    for k in SPLITS:
        rows = split_rows(plan, k)
        write_ucf_split(split_dir / f"trainlist{k:02d}.txt", rows[TRAIN], with_labels=True)
        write_ucf_split(split_dir / f"testlist{k:02d}.txt", rows[TEST], with_labels=False)


def write_hmdb_annotations(out_dir: str | os.PathLike, plan: Sequence[ProbeVideo]) -> None:
    """``<class>_test_split{1,2,3}.txt``, with the readers' own writer."""
    for k in SPLITS:
        rows = split_rows(plan, k)
        write_hmdb_split(Path(out_dir), k, [c.name for c in HMDB_CLASSES],
                         rows[TRAIN], rows[TEST], rows[UNUSED])


def write_ucf_world(spec: UcfWorldSpec, out_dir: str | os.PathLike) -> list[ProbeVideo]:
    """Plan, render every video and write the split files in one process (a stage renders
    :func:`write_probe_video` in parallel jobs instead)."""
    plan = plan_ucf_world(spec)
    _write_videos(plan, out_dir)
    write_ucf_annotations(out_dir, plan)
    return plan


def write_hmdb_world(spec: HmdbWorldSpec, out_dir: str | os.PathLike) -> list[ProbeVideo]:
    """As :func:`write_ucf_world`, for the HMDB flavour."""
    plan = plan_hmdb_world(spec)
    _write_videos(plan, out_dir)
    write_hmdb_annotations(out_dir, plan)
    return plan


def _write_videos(plan: Sequence[ProbeVideo], out_dir: str | os.PathLike) -> None:
    for video in plan:
        write_probe_video(video, Path(out_dir) / "videos")
