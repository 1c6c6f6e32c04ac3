"""The procedural audiovisual world behind the demo datasets.

A :class:`Scene` is a still, textured background with :class:`Actor`s on it. Each actor
belongs to a :class:`DemoClass`, occupies a box during an interval, and has *events*: at
each event time it does something visible (a flash or a jump) and makes its class's sound,
starting at the same instant, so shifting the audio by 0.5 s or more is detectable.

What identifies a class differs by class, so that the papers' claims show in miniature:

- appearance: shape and colour alone (every appearance class clicks the same way);
- motion: a 7.5 Hz square-wave flicker against a steady light of the same look. At 30 fps,
  keeping one frame in 16 lands on the same phase every time (16/30 s is 4 periods), so
  Slow-only sees a steady light; keeping one frame in 2 shows on/off plainly (Fast);
- sound: the same grey square, told apart only by the pitch of its beeps;
- audiovisual: a distinctive look together with a distinctive, synchronised sound.

Flavours (kinetics.py, epic.py, charades.py, ucf_hmdb.py, ava.py) decide how many actors a
video has, where and when. An actor may also move over its interval (rise, fall, sway: EPIC's
verbs; drift: AVA's walking people), and a shape may fill its whole box (rect: AVA's people,
whose box is the person's); the defaults, still and centred, render exactly as before these existed
(tests/test_demo_world_frozen.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Literal

import numpy as np

from avsf.io.media import write_video

Cue = Literal["appearance", "motion", "sound", "audiovisual"]
Shape = Literal["square", "disk", "bar", "rect"]  # rect: fills its box, whatever the aspect
Sound = Literal["click", "tone", "noise", "chirp"]
# How an actor moves over its interval (EPIC's verbs): still (the Kinetics default), rise
# (lifted: "take"), fall (set down: "put"), sway (side to side: "shake"), drift (at a constant
# velocity: AVA's "walk").
Movement = Literal["still", "rise", "fall", "sway", "drift"]

EVENT_SECONDS = 0.12  # how long a flash, jump or sound burst lasts
FLICKER_HZ = 7.5  # aliases to a constant at stride 16 of 30 fps, plain at stride 2
SWAY_HZ = 1.5  # side-to-side oscillations per second of a swaying actor


@dataclass(frozen=True)
class DemoClass:
    name: str
    cue: Cue
    shape: Shape
    color: tuple[int, int, int]
    sound: Sound
    pulse: Literal["flash", "jump"] = "flash"
    flicker_hz: float = 0.0
    pitch_hz: float = 0.0  # tone frequency, or the chirp's start frequency


CLASSES: tuple[DemoClass, ...] = (
    DemoClass("red square", "appearance", "square", (220, 40, 40), "click"),
    DemoClass("blue disk", "appearance", "disk", (40, 80, 230), "click"),
    DemoClass("blinking light", "motion", "disk", (235, 235, 200), "click", flicker_hz=FLICKER_HZ),
    DemoClass("steady light", "motion", "disk", (235, 235, 200), "click"),
    DemoClass("beeping", "sound", "square", (140, 140, 140), "tone", pitch_hz=1200.0),
    DemoClass("humming", "sound", "square", (140, 140, 140), "tone", pitch_hz=250.0),
    DemoClass("drumming", "audiovisual", "bar", (240, 140, 20), "noise", pulse="jump"),
    DemoClass("whistling", "audiovisual", "bar", (40, 200, 90), "chirp", pulse="jump", pitch_hz=1500.0),
)
CLASS_BY_NAME = {c.name: c for c in CLASSES}


def demo_cue_groups() -> dict[str, str]:
    """Class name -> the cue that identifies it: the groups the evaluation reports accuracy
    for, so each cue's share of the papers' claims (audio helps sound classes, Fast helps
    motion ones) shows in the demo."""
    return {c.name: c.cue for c in CLASSES}


@dataclass(frozen=True)
class Actor:
    """One instance of a class in a scene. Box in relative [0, 1] coordinates (x1, y1, x2, y2)."""

    cls: DemoClass
    box: tuple[float, float, float, float]
    start: float
    end: float
    events: tuple[float, ...]
    brightness: float = 1.0  # a steady light's level (motion classes differ only in time)
    phase: float = 0.0  # the flicker's phase, in periods
    movement: Movement = "still"
    travel: float = 0.0  # how far it moves, in frame heights: the whole rise or fall, or the sway's amplitude
    velocity: tuple[float, float] = (0.0, 0.0)  # a drift's (right, down), in frame widths and heights per second


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    duration: float
    actors: tuple[Actor, ...]
    seed: int  # drives the background texture and the audio noise
    tint: tuple[float, float, float] = (0.5, 0.5, 0.5)
    sample_rate: int | None = 48000  # None: no audio stream
    channels: int = 1
    # Light from above: every actor's shape this much brighter at its top and darker at its
    # bottom, linearly (0: flat). A world with light tells up from down: the rotation pretext
    # (avsf.data.rotation) can only be learned where it does, and only from the actors.
    light: float = 0.0
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))


def event_times(rng: np.random.Generator, start: float, end: float,
                gap: tuple[float, float] = (0.35, 1.0)) -> tuple[float, ...]:
    """Event onsets in [start, end - EVENT_SECONDS], separated by a uniform random gap."""
    times, t = [], start + rng.uniform(0.05, gap[0])
    while t < end - EVENT_SECONDS:
        times.append(round(float(t), 4))
        t += rng.uniform(*gap)
    return tuple(times)


def random_actor(rng: np.random.Generator, cls: DemoClass, start: float, end: float) -> Actor:
    """An actor of ``cls`` placed at random, with random events over [start, end]."""
    w, h = rng.uniform(0.25, 0.4), rng.uniform(0.35, 0.5)
    x1, y1 = rng.uniform(0.05, 0.95 - w), rng.uniform(0.1, 0.9 - h)
    return Actor(
        cls=cls,
        box=(x1, y1, x1 + w, y1 + h),
        start=start,
        end=end,
        events=event_times(rng, start, end),
        brightness=float(rng.uniform(0.35, 1.0)),
        phase=float(rng.uniform(0, 1)),
    )


def placed_actor(rng: np.random.Generator, cls: DemoClass, start: float, end: float, width: int, height: int,
                 size: float, movement: Movement = "still", travel: float = 0.0) -> Actor:
    """An actor of ``cls`` whose shape is ``size`` frame heights across, placed at random where
    the whole of its movement (and of its jumps) stays in the frame, with random events over
    [start, end], brightness and phase."""
    reach_up = 0.7 * size if cls.shape == "bar" else 0.5 * size  # a bar is 1.4 sides tall
    jump = jump_pixels(height) / height if cls.pulse == "jump" else 0.0
    margin = 0.03
    low = reach_up + margin + jump + (travel if movement == "rise" else 0.0)
    high = 1.0 - reach_up - margin - (travel if movement == "fall" else 0.0)
    cy = float(rng.uniform(low, high))
    half_x = (0.5 * size + (travel if movement == "sway" else 0.0)) * height / width
    cx = float(rng.uniform(half_x + margin, 1.0 - half_x - margin))
    box_half_x, box_half_y = 0.5 * size * height / width, 0.5 * size
    return Actor(
        cls=cls, box=(cx - box_half_x, cy - box_half_y, cx + box_half_x, cy + box_half_y),
        start=start, end=end, events=event_times(rng, start, end),
        brightness=float(rng.uniform(0.35, 1.0)), phase=float(rng.uniform(0, 1)),
        movement=movement, travel=travel,
    )


def check_light(light: float) -> None:
    """A flavour's ``light`` setting (:attr:`Scene.light`): in [0, 1) (the message names the field)."""
    if not 0 <= light < 1:
        raise ValueError("light: must be in [0, 1)")


# --------------------------------------------------------------------------- pictures


def render_frames(scene: Scene) -> Iterator[np.ndarray]:
    """The scene's frames, uint8 [H, W, 3], at ``scene.fps``."""
    background = _background(scene)
    masks = [_shape_mask(a, scene.width, scene.height) for a in scene.actors]
    shades = [_shading(mask, scene.light) if scene.light else None for mask in masks]
    jump = jump_pixels(scene.height)
    for index in range(scene.num_frames):
        t = index / scene.fps
        frame = background.copy()
        for actor, mask, shade in zip(scene.actors, masks, shades):
            if not actor.start <= t < actor.end:
                continue
            shift = (0, 0)
            if actor.movement != "still":
                shift = _displacement(actor, t, scene.width, scene.height)
            level = _visual_level(actor, t)
            pulsing = _in_event(actor, t)
            if pulsing and actor.cls.pulse == "jump":
                shift = (shift[0] - jump, shift[1])
            if shift != (0, 0):
                mask = np.roll(mask, shift, axis=(0, 1))
            color = np.asarray(actor.cls.color, np.float32) * level
            if pulsing and actor.cls.pulse == "flash":
                color = np.minimum(color + 90.0, 255.0)
            if shade is None:
                frame[mask] = color.astype(np.uint8)
            else:
                shade = np.roll(shade, shift[0])
                rows = np.nonzero(mask)[0]
                frame[mask] = np.clip(color[None, :] * shade[rows, None], 0, 255).astype(np.uint8)
        yield frame


def _shading(mask: np.ndarray, light: float) -> np.ndarray:
    """Per image row, the factor a shape lit from above is multiplied by: 1 + light at the
    top row of ``mask``, 1 - light at its bottom row, linear between (a shape moves with its
    rows: the caller rolls this as it rolls the mask)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    if not len(rows):
        return np.ones(mask.shape[0], np.float32)
    top, bottom = rows[0], rows[-1]
    depth = np.clip((np.arange(mask.shape[0]) - top) / max(bottom - top, 1), 0.0, 1.0)
    return (1.0 + light * (1.0 - 2.0 * depth)).astype(np.float32)


def jump_pixels(height: int) -> int:
    """How far a jumping actor is lifted, in pixels of a frame ``height`` tall."""
    return max(2, height // 12)


def _displacement(actor: Actor, t: float, width: int, height: int) -> tuple[int, int]:
    """(down, right) pixels the moving actor is shifted by at ``t``: a rise or fall goes
    evenly over the interval, a sway is a sine of ``SWAY_HZ`` starting at the rest place, a
    drift goes at its velocity from its box at ``start``."""
    if actor.movement == "drift":
        right, down = actor.velocity
        return int(round(down * (t - actor.start) * height)), int(round(right * (t - actor.start) * width))
    reach = actor.travel * height
    if actor.movement == "sway":
        return 0, int(round(reach * np.sin(2 * np.pi * SWAY_HZ * (t - actor.start))))
    progress = (t - actor.start) / max(actor.end - actor.start, 1e-9)
    down = reach * progress if actor.movement == "fall" else -reach * progress
    return int(round(down)), 0


def _visual_level(actor: Actor, t: float) -> float:
    if actor.cls.flicker_hz:
        on = ((t - actor.start) * actor.cls.flicker_hz + actor.phase) % 1.0 < 0.5
        return 1.0 if on else 0.15
    if actor.cls.cue == "motion":
        return actor.brightness
    return 1.0


def _in_event(actor: Actor, t: float) -> bool:
    return any(e <= t < e + EVENT_SECONDS for e in actor.events)


def _background(scene: Scene) -> np.ndarray:
    """A smooth, dim random texture: coarse noise upsampled, tinted per scene."""
    rng = np.random.default_rng(scene.seed)
    coarse = rng.uniform(20, 90, size=(6, 8)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1, scene.height)
    cols = np.linspace(0, coarse.shape[1] - 1, scene.width)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    smooth = (coarse[r0][:, c0] * (1 - fr) * (1 - fc) + coarse[r1][:, c0] * fr * (1 - fc)
              + coarse[r0][:, c1] * (1 - fr) * fc + coarse[r1][:, c1] * fr * fc)
    tint = np.asarray(scene.tint, np.float32) * 2
    return np.clip(smooth[..., None] * tint, 0, 255).astype(np.uint8)


def _shape_mask(actor: Actor, width: int, height: int) -> np.ndarray:
    """Pixels of the actor's shape: centred in its box, square in pixels whatever the aspect ratio."""
    x1, y1, x2, y2 = actor.box
    cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
    half = min((x2 - x1) * width, (y2 - y1) * height) / 2
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    dx, dy = np.abs(xs - cx), np.abs(ys - cy)
    if actor.cls.shape == "rect":  # the whole box
        return (dx <= (x2 - x1) * width / 2) & (dy <= (y2 - y1) * height / 2)
    if actor.cls.shape == "disk":
        return dx**2 + dy**2 <= half**2
    if actor.cls.shape == "bar":  # tall and thin
        return (dx <= half / 4) & (dy <= half * 1.4)
    return (dx <= half) & (dy <= half)


def encode_scene(scene: Scene, path: str | os.PathLike, codec: str = "libx264", audio_codec: str = "aac") -> None:
    """Render ``scene`` and encode it into ``path`` (by default H.264 at crf 20 and AAC; UCF101's
    and HMDB51's AVI: MPEG-4 Part 2 and PCM): how every flavour writes its videos, so that
    they all look alike to the decoder."""
    write_video(path, render_frames(scene), scene.fps, render_audio(scene),
                sample_rate=scene.sample_rate or 48000, crf=20, codec=codec, audio_codec=audio_codec)


# --------------------------------------------------------------------------- sound


def render_audio(scene: Scene) -> np.ndarray | None:
    """The soundtrack, float32 [channels, samples] in [-1, 1]; None when the scene has no audio stream."""
    if scene.sample_rate is None:
        return None
    rate = scene.sample_rate
    n = int(round(scene.duration * rate))
    rng = np.random.default_rng(scene.seed + 1)
    track = (0.01 * rng.standard_normal(n)).astype(np.float32)  # room noise
    burst_len = int(EVENT_SECONDS * rate)
    t = np.arange(burst_len, dtype=np.float32) / rate
    envelope = np.exp(-t / (EVENT_SECONDS / 3)).astype(np.float32)
    for actor in scene.actors:
        for onset in actor.events:
            start = int(round(onset * rate))
            burst = _burst(actor.cls, t, envelope, rng)[: max(0, n - start)]
            track[start : start + len(burst)] += burst
    track = np.clip(track, -1.0, 1.0)
    if scene.channels == 1:
        return track[None]
    return np.stack([track, 0.8 * track])  # a little off-centre


def _burst(cls: DemoClass, t: np.ndarray, envelope: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if cls.sound == "tone":
        return 0.5 * envelope * np.sin(2 * np.pi * cls.pitch_hz * t)
    if cls.sound == "chirp":  # a rising whistle: pitch_hz up by an octave over the burst
        sweep = cls.pitch_hz / EVENT_SECONDS
        return 0.5 * envelope * np.sin(2 * np.pi * (cls.pitch_hz * t + 0.5 * sweep * t**2))
    if cls.sound == "noise":
        return 0.6 * envelope * rng.standard_normal(len(t)).astype(np.float32)
    click = np.zeros_like(t)
    short = len(t) // 12
    click[:short] = 0.6 * rng.standard_normal(short) * envelope[:short]
    return click
