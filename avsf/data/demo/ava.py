"""The AVA flavour of the demo world: short film segments of 2-4 people, in AVA v2.2's files.

**Movies are segments.** A real AVA movie is a whole film whose seconds 902..1798 are
annotated (the store decodes it from 900 to 1800 s). The demo cannot render 15-minute films,
so a demo movie file is a short *segment* of its film: its t = 0 is movie second
``spec.movie_start_s`` (898 by default), and every annotation uses the film's own clock,
AVA's timestamps (``0902``, ``0903`` ... at 1 fps, ``keyframes_per_movie`` of them). A
keyframe at movie second s is therefore file second ``s - movie_start_s``. The pipeline's
matching parameter is the file's offset within its movie: ``movie_start_s`` here, 900 for
PySlowFast's trimmed 15-minute files, 0 for whole films. Native rates differ per movie
(23.976 = 24000/1001, 25 and 30 fps, in turn), so mapping a keyframe to a frame of the
30 fps store is exercised; containers are mp4 and mkv in turn, as AVA's own mix.

**People.** Each person has a colour of its own and a box that is exactly its rectangle
(a world actor of shape ``rect``), in a column of the frame of its own, so that people never
cover one another. Its actions hold over *intervals*, which may change between two
keyframes (at the half second); at each keyframe the ground truth gives the person's box at
that instant and every action of the interval. What tells each action (``cue``):

- pose, always exactly one: the rectangle's aspect (``stand`` tall, ``sit`` squat,
  ``crawl`` flat and rare);
- movement: ``walk`` drifts the standing box sideways at a constant speed (a crawl drifts
  too, slower): no single frame shows it;
- motion: ``hand wave`` flickers the person at 7.5 Hz (the world's blinking light: Fast
  sees it, Slow at stride 16 of 30 fps does not);
- sound: a person with a sound action flashes at random events and makes its sound at the
  same instant: a voice (``talk to``), a clap (``hand clap``) or a ting (``clink glass``,
  rare); one without is silent and does not flash. The picture tells who makes a sound,
  only the audio, in sync with the person's flashes, which one.

Eight actions are trained on and six evaluated (the evaluated list leaves out the rare
``crawl`` and ``clink glass``), as AVA trains on 80 and evaluates 60; names and ids are AVA's.

**Detections.** No person detector runs offline, so the predicted-boxes files are made the
way a detector's output looks: each true box of every keyframe (excluded ones too) jittered
a little, scored 0.85-1.0, except a planned few scored low (0.3-0.8) and a few missed; and a
few false positives, boxes away from every person, mostly scored low. The action column is
empty, as in PySlowFast's files. A user with a real detector passes its file instead.

Output, in AVA's own names and formats (avsf.data.ava's writers)::

    <out_dir>/videos/<video_id>.mp4 | .mkv            11-character YouTube-style ids
    <out_dir>/ava_file_names_trainval_v2.1.txt        one file name a line (AVA's download list)
    <out_dir>/ava_train_v2.2.csv, ava_val_v2.2.csv    video_id,timestamp,x1,y1,x2,y2,action_id,person_id
    <out_dir>/ava_action_list_v2.2.pbtxt              every action: label { name label_id label_type }
    <out_dir>/ava_action_list_v2.2_for_activitynet_2019.pbtxt   the evaluated subset, same form
    <out_dir>/ava_{train,val}_excluded_timestamps_v2.2.csv      video_id,timestamp
    <out_dir>/ava_{train,val}_predicted_boxes.csv     video_id,timestamp,x1,y1,x2,y2,,score

Excluded keyframes have no ground-truth rows (as in AVA, they were not annotated) but do
have detections. One val row writes its person id with a trailing underscore (``3_``), as
line 16 of the real val file does.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from avsf.data.ava import (
    AVA_FIRST_KEYFRAME,
    NO_ACTION,
    AvaBox,
    AvaDetection,
    Box,
    Keyframe,
    box_iou,
    write_action_list,
    write_ava_detections,
    write_ava_ground_truth,
    write_excluded_timestamps,
)
from avsf.data.demo.kinetics import youtube_ids
from avsf.data.demo.world import FLICKER_HZ, Actor, DemoClass, Scene, Sound, encode_scene, event_times
from avsf.io.atomic import atomic_output
from avsf.io.media import fps_fraction

SPLITS = ("train", "val")
GROUND_TRUTH = "ava_{split}_v2.2.csv"
EXCLUDED_TIMESTAMPS = "ava_{split}_excluded_timestamps_v2.2.csv"
PREDICTED_BOXES = "ava_{split}_predicted_boxes.csv"
ACTION_LIST = "ava_action_list_v2.2.pbtxt"
EVALUATED_ACTION_LIST = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
FILE_NAMES = "ava_file_names_trainval_v2.1.txt"

ActionCue = Literal["pose", "movement", "motion", "sound"]


@dataclass(frozen=True)
class AvaAction:
    id: int  # AVA's
    name: str  # AVA's
    label_type: str  # AVA's: PERSON_MOVEMENT, OBJECT_MANIPULATION, PERSON_INTERACTION
    cue: ActionCue
    evaluated: bool = True  # in the evaluated list (the 60 of AVA)
    size: tuple[float, float] | None = None  # a pose's box (width, height), in the person's heights
    drift_speed: tuple[float, float] | None = None  # the box drifts sideways, in frame widths per second
    flicker: bool = False
    sound: Sound | None = None  # what the person's events sound like while it lasts
    pitch_hz: float = 0.0


ACTIONS: tuple[AvaAction, ...] = (
    AvaAction(2, "crawl", "PERSON_MOVEMENT", "pose", evaluated=False, size=(0.95, 0.4),
              drift_speed=(0.02, 0.035)),
    AvaAction(11, "sit", "PERSON_MOVEMENT", "pose", size=(0.55, 0.68)),
    AvaAction(12, "stand", "PERSON_MOVEMENT", "pose", size=(0.4, 1.0)),
    AvaAction(14, "walk", "PERSON_MOVEMENT", "movement", drift_speed=(0.04, 0.07)),
    AvaAction(21, "clink glass", "OBJECT_MANIPULATION", "sound", evaluated=False, sound="tone", pitch_hz=2600.0),
    AvaAction(67, "hand clap", "PERSON_INTERACTION", "sound", sound="noise"),
    AvaAction(69, "hand wave", "PERSON_INTERACTION", "motion", flicker=True),
    AvaAction(79, "talk to (e.g., self, a person, a group)", "PERSON_INTERACTION", "sound", sound="tone",
              pitch_hz=300.0),
)
ACTION_BY_NAME = {a.name: a for a in ACTIONS}
ACTION_BY_ID = {a.id: a for a in ACTIONS}
# How often an interval holds each action: a pose always; walk only standing; one sound at most.
POSE_ODDS = {"stand": 0.55, "sit": 0.38, "crawl": 0.07}
WALK_ODDS = 0.4
WAVE_ODDS = 0.3  # not while crawling
SOUND_ODDS = {None: 0.5, "talk to (e.g., self, a person, a group)": 0.3, "hand clap": 0.15, "clink glass": 0.05}


def ava_cue_groups() -> dict[str, str]:
    """Action name -> the cue that identifies it (as world.demo_cue_groups): ``sound`` marks
    the actions the audio should help with."""
    return {a.name: a.cue for a in ACTIONS}


@dataclass(frozen=True)
class AvaWorldSpec:
    """How big the AVA world is. Train and val movies are different films."""

    seed: int = 0
    train_movies: int = 6
    val_movies: int = 3
    movie_start_s: float = 898.0  # the movie second at the file's t = 0 (the pipeline's offset)
    keyframes_per_movie: int = 6  # 0902 ... at 1 fps
    tail_s: float = 2.5  # film after the last keyframe (the store keeps 2 s past it)
    people: tuple[int, int] = (2, 4)  # per movie, inclusive
    sizes: Sequence[tuple[int, int]] = ((160, 120), (192, 108))
    fps_choices: Sequence[float] = (24000 / 1001, 25.0, 30.0)  # in turn over the movies
    extensions: Sequence[str] = (".mp4", ".mkv")  # in turn over the movies
    audio_rates: Sequence[int] = (44100, 48000)
    channels: Sequence[int] = (1, 2)
    change_probability: float = 0.35  # that a person's actions change between two keyframes
    person_height: tuple[float, float] = (0.4, 0.55)  # standing, in frame heights (less when a column is narrow)
    excluded_train_keyframes: int = 1
    excluded_val_keyframes: int = 2
    quirky_person_ids: int = 1  # val rows whose person id is written "3_" (as the real val file)
    box_jitter: float = 0.04  # sd of a detected box's edges, as a share of the box's width or height
    missed_fraction: float = 0.05  # of the true boxes, per split (at least one when above 0)
    low_score_fraction: float = 0.08  # true boxes the detector scores low (0.3-0.8)
    false_positive_fraction: float = 0.08  # false positives, as a share of the true boxes
    high_false_positive_share: float = 0.25  # of the false positives, those scored high (0.8-0.95)


@dataclass(frozen=True)
class AvaPerson:
    """A person on a keyframe, as the ground truth has it (box rounded as the file writes it)."""

    person_id: str
    box: Box
    action_ids: tuple[int, ...]  # ascending


@dataclass(frozen=True)
class AvaKeyframe:
    timestamp: int  # movie second
    people: tuple[AvaPerson, ...]
    excluded: bool = False  # listed in the excluded timestamps: no ground-truth rows


@dataclass(frozen=True)
class AvaTrack:
    """One person through the movie: a world actor per action interval, back to back."""

    person_id: str
    segments: tuple[Actor, ...]
    action_ids: tuple[tuple[int, ...], ...]  # per segment

    def box_at(self, t: float) -> Box:
        """The person's box at file second ``t`` (unrounded)."""
        actor = self.segments[self._index_at(t)]
        shift = actor.velocity[0] * (t - actor.start)
        x1, y1, x2, y2 = actor.box
        return (x1 + shift, y1, x2 + shift, y2)

    def actions_at(self, t: float) -> tuple[int, ...]:
        return self.action_ids[self._index_at(t)]

    def _index_at(self, t: float) -> int:
        return next(i for i, a in enumerate(self.segments) if a.start <= t < a.end)


DetectionKind = Literal["true", "low", "false"]  # a true box scored high, one scored low, a false positive


@dataclass(frozen=True)
class AvaDemoDetection:
    detection: AvaDetection
    kind: DetectionKind
    person_id: str | None  # the person a true box is of


@dataclass(frozen=True)
class AvaMovie:
    video_id: str
    split: str
    extension: str
    movie_start_s: float
    scene: Scene
    tracks: tuple[AvaTrack, ...]
    keyframes: tuple[AvaKeyframe, ...]
    detections: tuple[AvaDemoDetection, ...] = ()
    misses: tuple[tuple[int, str], ...] = ()  # (timestamp, person id) of the true boxes without a detection
    quirks: tuple[tuple[int, str, int], ...] = ()  # (timestamp, person id, action id) rows written "<id>_"

    @property
    def file_name(self) -> str:
        return f"{self.video_id}{self.extension}"

    @property
    def native_fps(self) -> Fraction:
        """The container's rate (23.976 -> 24000/1001)."""
        return fps_fraction(self.scene.fps)

    def file_time(self, timestamp: float) -> float:
        """Where movie second ``timestamp`` lies in the file."""
        return timestamp - self.movie_start_s


# --------------------------------------------------------------------------- planning


def plan_ava_world(spec: AvaWorldSpec) -> list[AvaMovie]:
    """Every movie of both splits with its ground truth and detections, deterministic in
    ``spec``: each movie has its own RNG, each split one for its exclusions and detections."""
    if spec.movie_start_s > AVA_FIRST_KEYFRAME - 1:
        raise ValueError(f"movie_start_s {spec.movie_start_s}: a file must start a second or more "
                         f"before the first keyframe ({AVA_FIRST_KEYFRAME})")
    counts = {"train": spec.train_movies, "val": spec.val_movies}
    ids = youtube_ids(spec.seed, sum(counts.values()), salt=0xA7)
    movies: list[AvaMovie] = []
    for split in SPLITS:
        for _ in range(counts[split]):
            movies.append(_plan_movie(spec, len(movies), ids[len(movies)], split))
    planned = []
    for split in SPLITS:
        rng = np.random.default_rng([spec.seed, 0xAD, SPLITS.index(split)])
        in_split = [m for m in movies if m.split == split]
        in_split = _exclude(rng, in_split, spec.excluded_train_keyframes if split == "train"
                            else spec.excluded_val_keyframes)
        in_split = _detect(spec, rng, in_split)
        if split == "val":
            in_split = _quirks(rng, in_split, spec.quirky_person_ids)
        planned += in_split
    return planned


def _plan_movie(spec: AvaWorldSpec, index: int, video_id: str, split: str) -> AvaMovie:
    rng = np.random.default_rng([spec.seed, 0xAB, index])
    timestamps = [AVA_FIRST_KEYFRAME + k for k in range(spec.keyframes_per_movie)]
    duration = round(timestamps[-1] + spec.tail_s - spec.movie_start_s, 3)
    width, height = (int(v) for v in spec.sizes[rng.integers(len(spec.sizes))])
    count = int(rng.integers(spec.people[0], spec.people[1] + 1))
    hue = float(rng.uniform())
    times = [t - spec.movie_start_s for t in timestamps]
    tracks = tuple(_plan_track(spec, rng, str(p), p, count, (hue + p / count) % 1.0, times, duration,
                               width / height) for p in range(count))
    keyframes = tuple(AvaKeyframe(ts, tuple(
        AvaPerson(tr.person_id, _rounded(tr.box_at(t)), tr.actions_at(t)) for tr in tracks))
        for ts, t in zip(timestamps, times))
    scene = Scene(width=width, height=height, fps=spec.fps_choices[index % len(spec.fps_choices)],
                  duration=duration, actors=tuple(a for tr in tracks for a in tr.segments),
                  seed=spec.seed * 100_003 + 90_000 + index,
                  tint=tuple(float(v) for v in rng.uniform(0.3, 0.7, size=3)),
                  sample_rate=int(spec.audio_rates[rng.integers(len(spec.audio_rates))]),
                  channels=int(spec.channels[rng.integers(len(spec.channels))]))
    return AvaMovie(video_id, split, spec.extensions[index % len(spec.extensions)], spec.movie_start_s,
                    scene, tracks, keyframes)


def _plan_track(spec: AvaWorldSpec, rng: np.random.Generator, person_id: str, column: int, columns: int,
                hue: float, times: Sequence[float], duration: float, aspect: float) -> AvaTrack:
    """A person in its column: action intervals that may change half-way between keyframes,
    a size at which its widest pose leaves room to walk, a path that stays in the column."""
    bounds = [0.0] + [t + 0.5 for t in times[:-1] if rng.uniform() < spec.change_probability] + [duration]
    actions = [_draw_actions(rng)]
    for _ in bounds[2:]:
        actions.append(_draw_actions(rng, differ_from=actions[-1]))
    poses = [next(a for a in acts if a.size) for acts in actions]
    lo, hi = column / columns, (column + 1) / columns  # the column, in frame widths
    widest, tallest = max(p.size[0] for p in poses), max(p.size[1] for p in poses)
    stature = min(float(rng.uniform(*spec.person_height)), 0.5 * (hi - lo) * aspect / widest, 0.9 / tallest)
    half_room = widest * stature / aspect / 2 + 0.01  # the centre keeps this far from the column's edges
    walls = (lo + half_room, hi - half_room)
    foot = float(rng.uniform(tallest * stature + 0.03, 0.97))
    look = dict(color=tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95)),
                brightness=float(rng.uniform(0.45, 1.0)), phase=float(rng.uniform()))
    centre = float(rng.uniform(*walls))
    segments, action_ids = [], []
    for (start, end), acts, pose in zip(zip(bounds, bounds[1:]), actions, poses):
        size = (pose.size[0] * stature / aspect, pose.size[1] * stature)
        for piece in _legs(rng, acts, centre, walls, start, end):
            centre = piece[1]
            segments.append(_segment(rng, person_id, acts, look, size, foot, *piece))
            action_ids.append(tuple(sorted(a.id for a in acts)))
        centre += segments[-1].velocity[0] * (end - segments[-1].start)
    return AvaTrack(person_id, tuple(segments), tuple(action_ids))


def _legs(rng: np.random.Generator, acts: Sequence[AvaAction], centre: float, walls: tuple[float, float],
          start: float, end: float) -> list[tuple[float, float, float, float]]:
    """(start, centre, end, velocity) of each straight leg of an interval: one still leg, or,
    when an action drifts, legs at its speed that turn back at the column's walls."""
    speed = max((float(rng.uniform(*a.drift_speed)) for a in acts if a.drift_speed), default=0.0)
    if not speed:
        return [(start, centre, end, 0.0)]
    velocity = -speed if centre - walls[0] > walls[1] - centre else speed  # towards the farther wall
    legs, t = [], start
    while t < end:
        wall = walls[1] if velocity > 0 else walls[0]
        stop = min(end, t + max((wall - centre) / velocity, 1e-3))
        legs.append((t, centre, stop, velocity))
        centre, t, velocity = centre + velocity * (stop - t), stop, -velocity
    return legs


def _segment(rng: np.random.Generator, person_id: str, acts: Sequence[AvaAction], look: dict,
             size: tuple[float, float], foot: float, start: float, centre: float, end: float,
             velocity: float) -> Actor:
    """The world actor of one leg: the person's rectangle in its pose, its flashes and sounds."""
    sound = next((a for a in acts if a.sound), None)
    flicker = FLICKER_HZ if any(a.flicker for a in acts) else 0.0
    cls = DemoClass(name=f"person {person_id}: " + ", ".join(a.name for a in acts), cue="motion", shape="rect",
                    color=look["color"], sound=sound.sound if sound else "click",
                    pitch_hz=sound.pitch_hz if sound else 0.0, flicker_hz=flicker)
    w, h = size
    # Only a person making a sound flashes (at its sounds): the picture shows who makes one,
    # only the audio which one (talk, clap, clink); the draw is made either way (same stream).
    events = event_times(rng, start, end)
    return Actor(cls=cls, box=(centre - w / 2, foot - h, centre + w / 2, foot), start=start, end=end,
                 events=events if sound else (), brightness=look["brightness"],
                 phase=(look["phase"] + start * flicker) % 1.0,  # the flicker goes on across legs
                 movement="drift" if velocity else "still", velocity=(velocity, 0.0))


def _draw_actions(rng: np.random.Generator, differ_from: tuple[AvaAction, ...] | None = None) -> tuple[AvaAction, ...]:
    """A pose, maybe a walk and a wave, at most one sound; other than ``differ_from``."""
    while True:
        pose = ACTION_BY_NAME[str(rng.choice(list(POSE_ODDS), p=list(POSE_ODDS.values())))]
        walking = pose.name == "stand" and rng.uniform() < WALK_ODDS
        waving = pose.name != "crawl" and rng.uniform() < WAVE_ODDS
        sound = list(SOUND_ODDS)[rng.choice(len(SOUND_ODDS), p=list(SOUND_ODDS.values()))]
        drawn = (pose, *([ACTION_BY_NAME["walk"]] if walking else []),
                 *([ACTION_BY_NAME["hand wave"]] if waving else []), *([ACTION_BY_NAME[sound]] if sound else []))
        if set(drawn) != set(differ_from or ()):
            return drawn


def _rounded(box: Box) -> Box:
    """As the files write boxes: 3 decimals, inside [0, 1]."""
    return tuple(round(min(max(v, 0.0), 1.0), 3) for v in box)


def _exclude(rng: np.random.Generator, movies: list[AvaMovie], count: int) -> list[AvaMovie]:
    """Mark ``count`` keyframes of the split as excluded."""
    every = [(m, k) for m in range(len(movies)) for k in range(len(movies[m].keyframes))]
    chosen = {every[i] for i in rng.choice(len(every), size=min(count, len(every)), replace=False)}
    return [replace(movie, keyframes=tuple(replace(kf, excluded=(m, k) in chosen)
                                           for k, kf in enumerate(movie.keyframes)))
            for m, movie in enumerate(movies)]


def _share(fraction: float, total: int) -> int:
    return 0 if fraction <= 0 else min(total, max(1, round(fraction * total)))


def _detect(spec: AvaWorldSpec, rng: np.random.Generator, movies: list[AvaMovie]) -> list[AvaMovie]:
    """A person detector's output on every keyframe of the split, with exactly the planned
    numbers of misses, low-scored true boxes and false positives."""
    people = [(m, kf.timestamp, p) for m, movie in enumerate(movies) for kf in movie.keyframes for p in kf.people]
    order = rng.permutation(len(people))
    missed = set(order[: _share(spec.missed_fraction, len(people))].tolist())
    low = set(order[len(missed) : len(missed) + _share(spec.low_score_fraction, len(people) - len(missed))].tolist())
    found: list[list[AvaDemoDetection]] = [[] for _ in movies]
    misses: list[list[tuple[int, str]]] = [[] for _ in movies]
    for i, (m, timestamp, person) in enumerate(people):
        if i in missed:
            misses[m].append((timestamp, person.person_id))
            continue
        score = rng.uniform(0.3, 0.8) if i in low else rng.uniform(0.85, 1.0)
        detection = AvaDetection(movies[m].video_id, timestamp, _jittered(rng, person.box, spec.box_jitter),
                                 NO_ACTION, round(float(score), 6))
        found[m].append(AvaDemoDetection(detection, "low" if i in low else "true", person.person_id))
    false_count = _share(spec.false_positive_fraction, len(people))
    high = round(spec.high_false_positive_share * false_count)
    for k in range(false_count):
        m = int(rng.integers(len(movies)))
        keyframe = movies[m].keyframes[rng.integers(len(movies[m].keyframes))]
        score = rng.uniform(0.8, 0.95) if k < high else rng.uniform(0.05, 0.6)
        detection = AvaDetection(movies[m].video_id, keyframe.timestamp, _away_from(rng, keyframe.people),
                                 NO_ACTION, round(float(score), 6))
        found[m].append(AvaDemoDetection(detection, "false", None))
    return [replace(movie, misses=tuple(misses[m]), detections=tuple(
        sorted(found[m], key=lambda d: (d.detection.timestamp, -d.detection.score))))
        for m, movie in enumerate(movies)]


def _jittered(rng: np.random.Generator, box: Box, jitter: float) -> Box:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    noise = rng.normal(0.0, jitter, size=4) * np.array([w, h, w, h])
    x1, y1, x2, y2 = _rounded(tuple(float(v) for v in np.array(box) + noise))
    return (x1, y1, max(x2, x1 + 0.01), max(y2, y1 + 0.01))


def _away_from(rng: np.random.Generator, people: Sequence[AvaPerson]) -> Box:
    """A person-sized box that overlaps no person's box much (IoU below 0.2)."""
    while True:
        w, h = float(rng.uniform(0.08, 0.3)), float(rng.uniform(0.15, 0.5))
        x1, y1 = float(rng.uniform(0, 1 - w)), float(rng.uniform(0, 1 - h))
        box = _rounded((x1, y1, x1 + w, y1 + h))
        if not people or box_iou([box], [p.box for p in people]).max() < 0.2:
            return box


def _quirks(rng: np.random.Generator, movies: list[AvaMovie], count: int) -> list[AvaMovie]:
    """``count`` ground-truth rows whose person id is written with a trailing underscore: the
    last action row of a person with two or more actions, on a keyframe that is not excluded."""
    rows = [(m, kf.timestamp, p.person_id, p.action_ids[-1]) for m, movie in enumerate(movies)
            for kf in movie.keyframes if not kf.excluded for p in kf.people if len(p.action_ids) > 1]
    chosen = [rows[i] for i in sorted(rng.choice(len(rows), size=min(count, len(rows)), replace=False))]
    return [replace(movie, quirks=tuple(r[1:] for r in chosen if r[0] == m)) for m, movie in enumerate(movies)]


# --------------------------------------------------------------------------- files


def ground_truth_rows(movie: AvaMovie) -> list[AvaBox]:
    """The movie's rows of ava_<split>_v2.2.csv: a row per (person, action) on each keyframe
    that is not excluded, by keyframe, person and action id."""
    quirks = set(movie.quirks)
    return [AvaBox(movie.video_id, kf.timestamp, p.box, action,
                   p.person_id + ("_" if (kf.timestamp, p.person_id, action) in quirks else ""))
            for kf in movie.keyframes if not kf.excluded for p in kf.people for action in p.action_ids]


def excluded_keyframes(movie: AvaMovie) -> list[Keyframe]:
    return [(movie.video_id, kf.timestamp) for kf in movie.keyframes if kf.excluded]


def write_ava_movie(movie: AvaMovie, videos_dir: str | os.PathLike) -> Path:
    """Render and encode one movie segment as ``<video_id>.mp4`` or ``.mkv``."""
    path = Path(videos_dir) / movie.file_name
    with atomic_output(path) as tmp:
        encode_scene(movie.scene, tmp)
    return path


def write_ava_world(spec: AvaWorldSpec, out_dir: str | os.PathLike) -> list[AvaMovie]:
    """Plan, render every movie and write the annotations in one process (a stage renders
    :func:`write_ava_movie` in parallel jobs instead)."""
    plan = plan_ava_world(spec)
    for movie in plan:
        write_ava_movie(movie, Path(out_dir) / "videos")
    write_ava_annotations(out_dir, plan)
    return plan


def write_ava_annotations(out_dir: str | os.PathLike, plan: Sequence[AvaMovie]) -> None:
    """Every annotation file of the world (module docstring), movies in video-id order."""
    out_dir = Path(out_dir)
    plan = sorted(plan, key=lambda m: m.video_id)
    for split in SPLITS:
        movies = [m for m in plan if m.split == split]
        write_ava_ground_truth(out_dir / GROUND_TRUTH.format(split=split),
                               [row for m in movies for row in ground_truth_rows(m)])
        write_excluded_timestamps(out_dir / EXCLUDED_TIMESTAMPS.format(split=split),
                                  [k for m in movies for k in excluded_keyframes(m)])
        write_ava_detections(out_dir / PREDICTED_BOXES.format(split=split),
                             [d.detection for m in movies for d in m.detections])
    label_types = {a.id: a.label_type for a in ACTIONS}
    write_action_list(out_dir / ACTION_LIST, {a.id: a.name for a in ACTIONS}, label_types)
    write_action_list(out_dir / EVALUATED_ACTION_LIST, {a.id: a.name for a in ACTIONS if a.evaluated}, label_types)
    with atomic_output(out_dir / FILE_NAMES) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in sorted(m.file_name for m in plan)), encoding="utf-8")
