"""The EPIC-Kitchens flavour of the demo world: long kitchen videos narrated in EPIC-100's files.

Each participant films in their own kitchen (a background tint of their own); a video shows,
one after the other, short segments in which one object (the noun) undergoes one action (the
verb). What tells the classes apart:

- verbs, by how the object moves: ``take`` lifts it, ``put`` sets it down, ``shake`` sways it
  side to side (movement: seen at any frame rate); ``wash`` makes it flicker at 7.5 Hz and
  ``hold`` keeps it steady at a random light (motion: the world's blinking/steady pair, told
  apart by the Fast pathway only);
- nouns, by shape and colour (appearance: tap, plate, knife, pan, sponge), except three that
  look the same (a grey box) and differ only in their sound (sound: kettle, microwave,
  blender). Every object's pulses make a sound at the same instant: appearance nouns all
  click, so the audio is informative for the sound nouns and neutral for the others.

Verbs and nouns are drawn independently; one verb (shake) and one noun (sponge) are tail
classes, rare on purpose. The last participant is unseen: validation videos only.

Output, in EPIC-KITCHENS-100's own names and formats::

    <out_dir>/videos/<video_id>.MP4                 P01_01.MP4 ...
    <out_dir>/EPIC_100_train.csv, EPIC_100_validation.csv
    <out_dir>/EPIC_100_video_info.csv
    <out_dir>/EPIC_100_verb_classes.csv, EPIC_100_noun_classes.csv
    <out_dir>/EPIC_100_tail_verbs.csv, EPIC_100_tail_nouns.csv
    <out_dir>/EPIC_100_unseen_participant_ids_validation.csv

Frame numbers are 1-based at the video's native rate: the frame shown at time t is
``floor(t * fps) + 1``. (The real files count frames at 60 fps whatever the native rate, and
from timestamps of more precision than the two decimals written: here the two agree exactly.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from avsf.data import epic as epic_files
from avsf.data.demo.world import FLICKER_HZ, Actor, DemoClass, Movement, Scene, encode_scene, placed_actor
from avsf.io.atomic import atomic_output
from avsf.io.media import fps_fraction

SPLITS = ("train", "validation")

VerbCue = Literal["movement", "motion"]
NounCue = Literal["appearance", "sound"]


@dataclass(frozen=True)
class EpicVerb:
    id: int
    key: str
    cue: VerbCue
    movement: Movement = "still"
    flicker: bool = False
    instances: tuple[str, ...] = ()  # the narrated words the class gathers (EPIC's ``instances``)
    category: str = ""
    tail: bool = False


@dataclass(frozen=True)
class EpicNoun:
    id: int
    key: str
    cue: NounCue
    shape: Literal["square", "disk", "bar"]
    color: tuple[int, int, int]
    sound: Literal["click", "tone", "noise", "chirp"] = "click"
    pitch_hz: float = 0.0
    instances: tuple[str, ...] = ()
    category: str = ""
    tail: bool = False


# Keys, instances and categories are EPIC-100's own (a few instances of each); ids are the demo's.
VERBS: tuple[EpicVerb, ...] = (
    EpicVerb(0, "take", "movement", "rise", instances=("take", "get", "grab", "pick-up"), category="retrieve"),
    EpicVerb(1, "put", "movement", "fall", instances=("put", "place", "put-down", "leave"), category="leave"),
    EpicVerb(2, "wash", "motion", flicker=True, instances=("wash", "rinse", "clean"), category="clean"),
    EpicVerb(3, "hold", "motion", instances=("hold", "hold-onto"), category="manipulate"),
    EpicVerb(4, "shake", "movement", "sway", instances=("shake", "jiggle"), category="manipulate", tail=True),
)
GREY_BOX = dict(shape="square", color=(140, 140, 140))
NOUNS: tuple[EpicNoun, ...] = (
    EpicNoun(0, "tap", "appearance", "square", (40, 90, 230), instances=("tap", "tap:water"), category="appliances"),
    EpicNoun(1, "plate", "appearance", "disk", (235, 235, 235), instances=("plate", "dish"), category="crockery"),
    EpicNoun(2, "knife", "appearance", "bar", (170, 170, 185), instances=("knife", "blade"), category="cutlery"),
    EpicNoun(3, "pan", "appearance", "disk", (200, 110, 40), instances=("pan", "saucepan"), category="cookware"),
    EpicNoun(4, "kettle", "sound", **GREY_BOX, sound="chirp", pitch_hz=1500.0,
             instances=("kettle", "cooker:water"), category="appliances"),
    EpicNoun(5, "microwave", "sound", **GREY_BOX, sound="tone", pitch_hz=1200.0,
             instances=("microwave", "oven:microwave"), category="appliances"),
    EpicNoun(6, "blender", "sound", **GREY_BOX, sound="noise", instances=("blender", "mixer"), category="appliances"),
    EpicNoun(7, "sponge", "appearance", "square", (230, 210, 40), instances=("sponge", "scrubber"),
             category="cleaning equipment and material", tail=True),
)


def epic_verb_cues() -> dict[str, str]:
    """Verb key -> what shows it: ``movement`` (any frame rate) or ``motion`` (Fast only)."""
    return {v.key: v.cue for v in VERBS}


def epic_noun_cues() -> dict[str, str]:
    """Noun key -> what tells it apart: ``appearance`` or ``sound`` (the grey boxes)."""
    return {n.key: n.cue for n in NOUNS}


@dataclass(frozen=True)
class EpicWorldSpec:
    """How big the kitchen world is. Participants P01...; the last ``unseen_participants`` of
    them appear in validation only."""

    seed: int = 0
    participants: int = 4
    unseen_participants: int = 1
    train_videos_per_participant: int = 3
    validation_videos_per_participant: int = 1
    unseen_validation_videos: int = 2  # per unseen participant
    video_seconds: float = 24.0  # 14 videos of 24 s render in about 17 s on one core
    segment_seconds: tuple[float, float] = (2.2, 3.0)
    gap_seconds: tuple[float, float] = (0.1, 0.5)
    sizes: Sequence[tuple[int, int]] = ((128, 96),)
    fps_choices: Sequence[float] = (50.0, 60000 / 1001)  # EPIC's native rates (59.94)
    sample_rate: int = 48000
    channels: int = 1
    tail_train_segments: int = 4  # per tail class
    tail_validation_segments: int = 2
    sway_travel: float = 0.12  # a shake's amplitude, in frame heights
    lift_travel: tuple[float, float] = (0.15, 0.25)  # how far take lifts / put lowers, in frame heights


@dataclass(frozen=True)
class EpicSegment:
    """One narrated action: the row of EPIC_100_<split>.csv, and the actor that plays it."""

    narration_id: str
    narration_time: float  # seconds, 3 decimals
    start: float  # seconds, 2 decimals (as the file writes them)
    stop: float
    start_frame: int
    stop_frame: int
    verb: EpicVerb
    verb_word: str  # the narrated instance of the verb, e.g. pick-up
    noun: EpicNoun
    actor: Actor

    @property
    def narration(self) -> str:
        return f"{self.verb_word.replace('-', ' ')} {self.noun.key}"


@dataclass(frozen=True)
class EpicVideo:
    video_id: str
    participant_id: str
    split: str
    segments: tuple[EpicSegment, ...]
    scene: Scene

    @property
    def native_fps(self) -> float:
        """The container's rate (59.94 -> 60000/1001), which frame numbers count at."""
        return float(fps_fraction(self.scene.fps))

    @property
    def duration(self) -> float:
        return self.scene.num_frames / self.native_fps


def frame_at(seconds: float, fps: float) -> int:
    """The 1-based number of the frame shown at ``seconds``."""
    return math.floor(seconds * fps + 1e-6) + 1


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Layout:
    video_id: str
    participant_id: str
    split: str
    fps: float
    size: tuple[int, int]
    times: tuple[tuple[float, float, float], ...]  # (start, stop, narration time) per segment


def plan_epic_world(spec: EpicWorldSpec) -> list[EpicVideo]:
    """Every video and its narrations, deterministic in ``spec``: each video has its own RNGs
    (one for its timing, one for its actors), each split one for its classes."""
    layouts = _layouts(spec)
    labels = {split: _split_labels(spec, split, sum(len(l.times) for l in layouts if l.split == split))
              for split in SPLITS}
    taken = {split: 0 for split in SPLITS}
    videos = []
    for index, layout in enumerate(layouts):
        first = taken[layout.split]
        taken[layout.split] += len(layout.times)
        pairs = labels[layout.split][first : taken[layout.split]]
        videos.append(_plan_video(spec, index, layout, pairs))
    return videos


def _layouts(spec: EpicWorldSpec) -> list[_Layout]:
    seen = spec.participants - spec.unseen_participants
    layouts = []
    for p in range(spec.participants):
        participant = f"P{p + 1:02d}"
        if p < seen:
            splits = (["train"] * spec.train_videos_per_participant
                      + ["validation"] * spec.validation_videos_per_participant)
        else:
            splits = ["validation"] * spec.unseen_validation_videos
        for k, split in enumerate(splits):
            rng = np.random.default_rng([spec.seed, 0xE9, p, k])
            fps = float(spec.fps_choices[rng.integers(len(spec.fps_choices))])
            width, height = spec.sizes[rng.integers(len(spec.sizes))]
            layouts.append(_Layout(f"{participant}_{k + 1:02d}", participant, split, fps,
                                   (int(width), int(height)), _segment_times(spec, rng)))
    return layouts


def _segment_times(spec: EpicWorldSpec, rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """Back-to-back segments on a 0.01 s grid, small gaps between, all inside the video."""
    times, t = [], round(float(rng.uniform(0.2, 0.8)), 2)
    while True:
        stop = round(t + float(rng.uniform(*spec.segment_seconds)), 2)
        if stop > spec.video_seconds - 0.1:
            return tuple(times)
        narration = round(min(max(t + float(rng.uniform(-0.4, 0.6)), 0.0), spec.video_seconds), 3)
        times.append((t, stop, narration))
        t = round(stop + float(rng.uniform(*spec.gap_seconds)), 2)


def _split_labels(spec: EpicWorldSpec, split: str, count: int) -> list[tuple[EpicVerb, EpicNoun]]:
    """(verb, noun) per segment of the split: each tail class on exactly its few segments, the
    common classes evenly over the rest; verbs and nouns shuffled independently."""
    rng = np.random.default_rng([spec.seed, 0xE1, SPLITS.index(split)])
    tail_count = spec.tail_train_segments if split == "train" else spec.tail_validation_segments

    def draw(classes):
        tail = [c for c in classes if c.tail]
        common = [c for c in classes if not c.tail]
        rare = [c for c in tail for _ in range(tail_count)][:count]
        drawn = rare + [common[i % len(common)] for i in range(count - len(rare))]
        return [drawn[i] for i in rng.permutation(count)]

    return list(zip(draw(VERBS), draw(NOUNS)))


def _plan_video(spec: EpicWorldSpec, index: int, layout: _Layout,
                pairs: Sequence[tuple[EpicVerb, EpicNoun]]) -> EpicVideo:
    rng = np.random.default_rng([spec.seed, 0xEA, index])
    fps = float(fps_fraction(layout.fps))
    width, height = layout.size
    segments = []
    for k, ((start, stop, narration), (verb, noun)) in enumerate(zip(layout.times, pairs)):
        segments.append(EpicSegment(
            narration_id=f"{layout.video_id}_{k}", narration_time=narration, start=start, stop=stop,
            start_frame=frame_at(start, fps), stop_frame=frame_at(stop, fps), verb=verb,
            verb_word=str(verb.instances[rng.integers(len(verb.instances))]), noun=noun,
            actor=_actor(spec, rng, verb, noun, start, stop, width, height),
        ))
    participant = int(layout.participant_id[1:])
    kitchen = np.random.default_rng([spec.seed, 0xEC, participant])  # a participant's kitchen: one tint
    scene = Scene(width=width, height=height, fps=layout.fps, duration=spec.video_seconds,
                  actors=tuple(s.actor for s in segments), seed=spec.seed * 100_003 + 50_000 + index,
                  tint=tuple(float(v) for v in kitchen.uniform(0.3, 0.7, size=3)),
                  sample_rate=spec.sample_rate, channels=spec.channels)
    return EpicVideo(layout.video_id, layout.participant_id, layout.split, tuple(segments), scene)


def _actor(spec: EpicWorldSpec, rng: np.random.Generator, verb: EpicVerb, noun: EpicNoun,
           start: float, stop: float, width: int, height: int) -> Actor:
    """The noun's object doing the verb, placed where its whole movement stays in the frame."""
    cls = DemoClass(
        name=f"{verb.key} {noun.key}",
        cue="motion" if verb.cue == "motion" else noun.cue,  # motion: a steady light's level applies (hold)
        shape=noun.shape, color=noun.color, sound=noun.sound, pitch_hz=noun.pitch_hz,
        flicker_hz=FLICKER_HZ if verb.flicker else 0.0,
    )
    size = float(rng.uniform(0.28, 0.38))  # the shape's side, in frame heights
    travel = {"rise": float(rng.uniform(*spec.lift_travel)), "fall": float(rng.uniform(*spec.lift_travel)),
              "sway": spec.sway_travel}.get(verb.movement, 0.0)
    return placed_actor(rng, cls, start, stop, width, height, size, verb.movement, travel)


# --------------------------------------------------------------------------- writing


def write_epic_video(video: EpicVideo, videos_dir: str | os.PathLike) -> Path:
    """Render and encode one video as ``<video_id>.MP4`` (EPIC's own spelling)."""
    path = Path(videos_dir) / f"{video.video_id}.MP4"
    with atomic_output(path) as tmp:
        encode_scene(video.scene, tmp)
    return path


def write_epic_world(spec: EpicWorldSpec, out_dir: str | os.PathLike) -> list[EpicVideo]:
    """Plan, render every video and write the annotations, in one process (tests, small
    worlds; a stage renders :func:`write_epic_video` in parallel jobs instead)."""
    plan = plan_epic_world(spec)
    for video in plan:
        write_epic_video(video, Path(out_dir) / "videos")
    write_epic_annotations(out_dir, plan)
    return plan


def write_epic_annotations(out_dir: str | os.PathLike, plan: Sequence[EpicVideo]) -> None:
    """Every annotation file of the world, with the readers' own writers (avsf.data.epic),
    which lay them out as EPIC-100 does, byte for byte."""
    out_dir = Path(out_dir)
    for split in SPLITS:
        narrations = [epic_narration(v, s) for v in plan if v.split == split for s in v.segments]
        narrations.sort(key=lambda n: n.narration_id)  # the real files are sorted by narration_id, as text
        epic_files.write_epic_annotations(out_dir / f"EPIC_100_{split}.csv", narrations)
    epic_files.write_epic_video_info(out_dir / "EPIC_100_video_info.csv", [
        epic_files.EpicVideoInfo(v.video_id, v.duration, v.native_fps, f"{v.scene.width}x{v.scene.height}")
        for v in plan])
    for name, classes in (("verb", VERBS), ("noun", NOUNS)):
        epic_files.write_epic_classes(out_dir / f"EPIC_100_{name}_classes.csv", [c.key for c in classes],
                                      [c.category for c in classes], [c.instances for c in classes])
        epic_files.write_id_list(out_dir / f"EPIC_100_tail_{name}s.csv", name, [c.id for c in classes if c.tail])
    unseen = sorted({v.participant_id for v in plan if v.split == "validation"}
                    - {v.participant_id for v in plan if v.split == "train"})
    epic_files.write_id_list(out_dir / "EPIC_100_unseen_participant_ids_validation.csv", "participant_id", unseen)


def epic_narration(video: EpicVideo, s: EpicSegment) -> epic_files.EpicNarration:
    """The segment as a row of EPIC_100_<split>.csv."""
    return epic_files.EpicNarration(
        narration_id=s.narration_id, participant_id=video.participant_id, video_id=video.video_id,
        start_s=s.start, stop_s=s.stop, start_frame=s.start_frame, stop_frame=s.stop_frame,
        narration=s.narration, verb=s.verb_word, verb_class=s.verb.id, noun=s.noun.key, noun_class=s.noun.id,
        all_nouns=(s.noun.key,), all_noun_classes=(s.noun.id,), narration_s=s.narration_time)
