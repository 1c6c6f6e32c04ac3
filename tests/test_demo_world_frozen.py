"""The Kinetics flavour renders exactly as before the world grew EPIC and Charades features.

The demo pipeline's cached results hang on the Kinetics videos' bytes, so world.py may only
grow optional features whose defaults leave today's pictures and sounds as they are. The
digests below were recorded from the main-branch code (commit 7f82784) before any change:
one short video of every class, covering every look, pulse, flicker and sound. Frames are
compared bit for bit; the soundtrack at 16-bit resolution (numpy's sin and exp may differ in
the last bit between CPUs, which is far below what AAC keeps).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from avsf.data.demo.kinetics import KineticsWorldSpec, plan_world
from avsf.data.demo.world import render_audio, render_frames

SPEC = KineticsWorldSpec(train_videos_per_class=1, val_videos_per_class=0, sizes=((96, 72),),
                         missing_sources=0, corrupt_videos=0, no_audio_fraction=0.0,
                         raw_seconds=(4.0, 4.5))

# class -> (sha256 of the frames' bytes, sha256 of the soundtrack as int16)
RECORDED = {
    "red square": ("164504a7282e211a696e3055ef13b702794c62a6fe810534a3bdc7fab8ce75e9",
                   "f0c2cc13e3d12dd02abb585e3aa0577469147749e9b81136672f08fb4c4ff40a"),
    "blue disk": ("b98289f71660d3d6e0c5b6aeb54a6c8883be2889e3714b28797d05e9a000ac71",
                  "1594282ad860b3ae7390c549cc0a21f8f02d34fae676682dcfe960f519c533a9"),
    "blinking light": ("794b191e9ae4e1ad1b51a79a0e57b27e982f9bda63a9aff307aff87073ee4fab",
                       "5d3672f8060f11b440cd07b0361883bfda0512b4578d7ea85e6e71778080be91"),
    "steady light": ("20d403987544e33a1c2cd4dc6c79e30fe23bfb3ed76438d4f7a060c9dc513be2",
                     "dbbc5820dc06153c1e6a268c7be9ea48f1cd48c5d784eecb6362b47e1a98c737"),
    "beeping": ("8aece7c3174d5b92f0062035afb8b60b27f132ed02c166be602f70adce9d5887",
                "ec45d3f6b975aaf648144d8717976561ef3eab78ee03202e0c1d4e885eb72702"),
    "humming": ("a9d02ac390f240f98e7d1803cfed9ab524c47cc63262dcfc22a7aa9b7a349aee",
                "62f6dab950238164a09e5f8ce137994830a338b1cf55ef77250e7d469bffdc76"),
    "drumming": ("390c0a8f3d9b79a3880dcf2f017c47e3030866e35930f529815f1e22e3f06ed7",
                 "5c2e3041ee7b6170a461a5abc4fb50237969f37cc0213949e579d3b7abfc49a5"),
    "whistling": ("0145efc9025ac23a538a428f531971f9e6c9fb99b1a33667b90e70cf9369c2e3",
                  "0672a3ac64308c21386063a3c81881d4831d3a55a29bb5ce2140eb8ede32e39e"),
}


@pytest.mark.parametrize("video", plan_world(SPEC), ids=lambda v: v.label)
def test_kinetics_scene_renders_as_recorded(video):
    frames = hashlib.sha256()
    for frame in render_frames(video.scene):
        frames.update(frame.tobytes())
    audio = np.round(render_audio(video.scene) * 32767).astype(np.int16)
    assert (frames.hexdigest(), hashlib.sha256(audio.tobytes()).hexdigest()) == RECORDED[video.label]
