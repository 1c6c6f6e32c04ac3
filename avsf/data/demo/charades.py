"""The Charades flavour of the demo world: indoor videos with overlapping actions, in Charades v1's files.

A video shows two to four actions of different classes over overlapping intervals: each is
an actor of the world (see world.py) in its own quarter of the frame, visible and making its
sounds during its interval only. The classes are the world's eight, each cue twice
(appearance, motion, sound, audiovisual), under Charades-like names. A few videos have an
empty ``actions`` field and show nothing but the room: the Charades quirk of unannotated
videos (the official evaluation drops them).

Output, in Charades v1's own names and formats::

    <out_dir>/videos/<id>.mp4                       5-character ids, e.g. 46GP8
    <out_dir>/Charades_v1_train.csv, Charades_v1_test.csv
        id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
        (CRLF line ends; fields with commas quoted; actions ``c003 1.20 9.80;c001 5.00 14.30``)
    <out_dir>/Charades_v1_classes.txt              ``c000 Holding a red box`` lines
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from avsf.data.charades import CharadesAction, CharadesVideo, write_charades, write_charades_classes
from avsf.data.demo.world import CLASS_BY_NAME, Actor, DemoClass, Scene, encode_scene, event_times
from avsf.io.atomic import atomic_output

SPLITS = ("train", "test")
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ROOMS = ("Kitchen", "Bedroom", "Living room", "Hallway", "Bathroom", "Garage", "Pantry",
         "Home Office / Study (A room in a house used for work)",
         "Entryway (A hall that is generally located at the entrance of a house)")


@dataclass(frozen=True)
class CharadesClass:
    code: str  # c000 ...
    look: DemoClass  # the world's class, renamed
    phrase: str  # what the script says the person does
    obj: str  # the object the ``objects`` column lists

    @property
    def name(self) -> str:
        return self.look.name


def _renamed(world_name: str, name: str) -> DemoClass:
    return replace(CLASS_BY_NAME[world_name], name=name)


CLASSES: tuple[CharadesClass, ...] = (
    CharadesClass("c000", _renamed("red square", "Holding a red box"), "holds a red box", "box"),
    CharadesClass("c001", _renamed("blue disk", "Holding a blue plate"), "holds a blue plate", "dish"),
    CharadesClass("c002", _renamed("blinking light", "Turning a light on and off"),
                  "turns a light on and off", "light"),
    CharadesClass("c003", _renamed("steady light", "Sitting by a lamp"), "sits by a lamp", "light"),
    CharadesClass("c004", _renamed("beeping", "Playing with a phone"), "plays with a beeping phone", "phone"),
    CharadesClass("c005", _renamed("humming", "Running a vacuum cleaner"), "runs a vacuum cleaner", "vacuum"),
    CharadesClass("c006", _renamed("drumming", "Drumming on a table"), "drums on a table", "table"),
    CharadesClass("c007", _renamed("whistling", "Whistling a tune"), "whistles a tune", "mouth"),
)


def charades_cue_groups() -> dict[str, str]:
    """Class name -> the cue that identifies it (as world.demo_cue_groups)."""
    return {c.name: c.look.cue for c in CLASSES}


@dataclass(frozen=True)
class CharadesWorldSpec:
    seed: int = 0
    train_videos: int = 12
    test_videos: int = 8
    empty_train_videos: int = 1  # videos whose actions field is empty (nothing happens in them)
    empty_test_videos: int = 1
    video_seconds: tuple[float, float] = (20.0, 24.0)
    actions_per_video: tuple[int, int] = (2, 4)  # inclusive
    action_fraction: tuple[float, float] = (0.35, 0.7)  # an action's length, as a share of its video
    sizes: Sequence[tuple[int, int]] = ((128, 96), (160, 120))
    fps_choices: Sequence[float] = (29.97, 30.0)
    audio_rates: Sequence[int] = (44100, 48000)
    subjects: int = 6


@dataclass(frozen=True)
class CharadesDemoVideo:
    """One video: its row of Charades_v1_<split>.csv (the readers' own type) and its scene."""

    split: str
    row: CharadesVideo
    scene: Scene

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def actions(self) -> tuple[CharadesAction, ...]:
        return self.row.actions

    @property
    def length(self) -> float:
        return self.row.length


def plan_charades_world(spec: CharadesWorldSpec) -> list[CharadesDemoVideo]:
    """Every video of both splits, deterministic in ``spec`` (each video has its own RNG).
    The empty videos are the last of each split."""
    counts = {"train": spec.train_videos, "test": spec.test_videos}
    empty = {"train": spec.empty_train_videos, "test": spec.empty_test_videos}
    ids = _ids(spec.seed, sum(counts.values()), 5, 0xC1)
    subjects = _ids(spec.seed, spec.subjects, 4, 0xC2)
    videos = []
    for split in SPLITS:
        for k in range(counts[split]):
            index = len(videos)
            rng = np.random.default_rng([spec.seed, 0xCA, index])
            is_empty = k >= counts[split] - empty[split]
            videos.append(_plan_video(spec, rng, index, ids[index], split, subjects, is_empty))
    return videos


def _plan_video(spec: CharadesWorldSpec, rng: np.random.Generator, index: int, video_id: str, split: str,
                subjects: Sequence[str], is_empty: bool) -> CharadesDemoVideo:
    length = round(float(rng.uniform(*spec.video_seconds)), 2)
    width, height = (int(v) for v in spec.sizes[rng.integers(len(spec.sizes))])
    actions = () if is_empty else _actions(spec, rng, length)
    cells = rng.permutation(4)  # a quarter of the frame each, so actors never cover one another
    actors = tuple(_actor(rng, a, int(cell)) for a, cell in zip(actions, cells))
    scene = Scene(width=width, height=height, fps=float(spec.fps_choices[rng.integers(len(spec.fps_choices))]),
                  duration=length, actors=actors, seed=spec.seed * 100_003 + 70_000 + index,
                  tint=tuple(float(v) for v in rng.uniform(0.3, 0.7, size=3)),
                  sample_rate=int(spec.audio_rates[rng.integers(len(spec.audio_rates))]), channels=1)
    score = lambda: None if rng.uniform() < 0.1 else int(rng.integers(4, 8))  # blank now and then, as real rows
    script, objects, descriptions = _texts(actions)
    row = CharadesVideo(
        id=video_id, subject=subjects[rng.integers(len(subjects))], scene=ROOMS[rng.integers(len(ROOMS))],
        quality=score(), relevance=score(), verified="Yes" if rng.uniform() < 0.9 else "No", script=script,
        objects=objects, descriptions=descriptions, actions=actions, length=length)
    return CharadesDemoVideo(split, row, scene)


def _texts(actions: Sequence[CharadesAction]) -> tuple[str, str, str]:
    """The script, objects and description columns, written from the actions."""
    ordered = [CLASSES[a.class_index] for a in sorted(actions, key=lambda a: a.start)]
    if not ordered:
        return "A person walks into the room, looks around, then leaves.", "floor", "Someone walks in and out."
    return ("A person " + ", then ".join(c.phrase for c in ordered) + ".",
            ";".join(sorted({c.obj for c in ordered})),
            "A person " + " and ".join(c.phrase for c in ordered) + " in the room.")


def _actions(spec: CharadesWorldSpec, rng: np.random.Generator, length: float) -> tuple[CharadesAction, ...]:
    """2-4 actions of distinct classes on a 0.1 s grid, at least two of them overlapping."""
    count = int(rng.integers(spec.actions_per_video[0], spec.actions_per_video[1] + 1))
    classes = [int(i) for i in rng.choice(len(CLASSES), size=count, replace=False)]
    while True:
        spans = []
        for _ in classes:
            span = float(rng.uniform(*spec.action_fraction)) * length
            start = round(float(rng.uniform(0, length - span)), 1)
            spans.append((start, min(round(start + span, 1), round(length - 0.05, 1))))
        if any(_overlap(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :]):
            return tuple(CharadesAction(c, s, e) for c, (s, e) in zip(classes, spans))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _actor(rng: np.random.Generator, action: CharadesAction, cell: int) -> Actor:
    """The action's actor in quarter ``cell`` (0 top left ... 3 bottom right), during its
    interval, placed so that its shape stays in its quarter even when it jumps."""
    col, row = cell % 2, cell // 2
    side = float(rng.uniform(0.2, 0.26))  # the box's side, in frame widths and heights
    reach = (0.7 if CLASSES[action.class_index].look.shape == "bar" else 0.5) * side  # a bar is 1.4 sides tall
    jump = 1 / 12 + 0.01  # render_frames lifts a jumping shape by a twelfth of the height
    cx = 0.5 * col + float(rng.uniform(side / 2 + 0.02, 0.48 - side / 2))
    cy = 0.5 * row + float(rng.uniform(reach + jump, 0.5 - reach))
    return Actor(
        cls=CLASSES[action.class_index].look, box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
        start=action.start, end=action.end, events=event_times(rng, action.start, action.end),
        brightness=float(rng.uniform(0.35, 1.0)), phase=float(rng.uniform(0, 1)),
    )


def _ids(seed: int, count: int, size: int, salt: int) -> list[str]:
    """Unique ids of capitals and digits, as Charades' video (5) and subject (4) ids."""
    rng = np.random.default_rng([seed, salt])
    ids: list[str] = []
    while len(ids) < count:
        new = "".join(rng.choice(list(ID_ALPHABET), size=size))
        if new not in ids:
            ids.append(new)
    return ids


# --------------------------------------------------------------------------- writing


def write_charades_video(video: CharadesDemoVideo, videos_dir: str | os.PathLike) -> Path:
    """Render and encode one video as ``<id>.mp4``."""
    path = Path(videos_dir) / f"{video.id}.mp4"
    with atomic_output(path) as tmp:
        encode_scene(video.scene, tmp)
    return path


def write_charades_world(spec: CharadesWorldSpec, out_dir: str | os.PathLike) -> list[CharadesDemoVideo]:
    """Plan, render every video and write the annotations in one process (a stage renders
    :func:`write_charades_video` in parallel jobs instead)."""
    plan = plan_charades_world(spec)
    for video in plan:
        write_charades_video(video, Path(out_dir) / "videos")
    write_charades_annotations(out_dir, plan)
    return plan


def write_charades_annotations(out_dir: str | os.PathLike, plan: Sequence[CharadesDemoVideo]) -> None:
    """Charades_v1_{train,test}.csv and Charades_v1_classes.txt, with the readers' own writers
    (avsf.data.charades), which lay them out as Charades v1 does."""
    out_dir = Path(out_dir)
    for split in SPLITS:
        write_charades(out_dir / f"Charades_v1_{split}.csv", [v.row for v in plan if v.split == split])
    write_charades_classes(out_dir / "Charades_v1_classes.txt", [c.name for c in CLASSES])
