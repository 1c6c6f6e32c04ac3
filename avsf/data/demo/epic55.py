"""The EPIC-Kitchens-55 files of the EPIC-Kitchens demo world (avsf.data.demo.epic).

The world is EPIC-100's flavour as it is (its spec, plan, classes and videos); only the files
differ, written in EPIC-Kitchens-55's own names and formats (avsf.data.epic55)::

    <out_dir>/videos/<video_id>.MP4                 written by avsf.data.demo.epic.write_epic_video
    <out_dir>/EPIC_train_action_labels.csv          the world's train split
    <out_dir>/EPIC_test_s1_timestamps.csv           its validation split, participants seen in train
    <out_dir>/EPIC_test_s2_timestamps.csv           its validation split, participants never in train
    <out_dir>/EPIC_verb_classes.csv, EPIC_noun_classes.csv
    <out_dir>/EPIC_many_shot_verbs.csv, _nouns.csv, _actions.csv
    <out_dir>/EPIC_video_info.csv

A segment's uid is its position among every segment of the world, the videos in id order and
a video's segments in time order (as the real uids run through train and test together), so
the train file and the test files interleave their uids as the real ones do; each file is
sorted by uid. Frame numbers are the world's (at the video's native rate; the real files
count at 60 fps). The test files carry no labels, as the real ones; :func:`epic55_narrations`
gives them (the labels the challenge server kept), for scoring the demo's test sets.

The paper's validation split (avsf.data.epic55.VALIDATION_PARTICIPANTS, P26-P31) has no
participant here; a demo run holds out participants of its own choosing with
:func:`avsf.data.epic55.split_by_participants`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from avsf.data import epic55
from avsf.data.demo.epic import NOUNS, VERBS, EpicVideo, epic_narration
from avsf.data.epic import EpicNarration, EpicVideoInfo

# A demo class is many-shot with more than this many training segments (the real rule: more
# than 100 of 28,472). The default world has about 70 training segments: its common verbs
# and nouns have 9 or more each, its tail classes (shake, sponge) 4, so those two are few-shot.
MANY_SHOT_MORE_THAN = 5


def epic55_narrations(plan: Sequence[EpicVideo]) -> dict[str, list[EpicNarration]]:
    """Each file's narrations, by uid: ``train``, ``s1`` and ``s2``, all with their labels (the
    test files leave them out; these are what the challenge server held)."""
    train_participants = {v.participant_id for v in plan if v.split == "train"}
    files: dict[str, list[EpicNarration]] = {"train": [], "s1": [], "s2": []}
    uid = 0
    for video in sorted(plan, key=lambda v: v.video_id):
        for segment in video.segments:
            narration = replace(epic_narration(video, segment), narration_id=str(uid), narration_s=None)
            uid += 1
            if video.split == "train":
                files["train"].append(narration)
            else:
                seen = video.participant_id in train_participants
                files["s1" if seen else "s2"].append(narration)
    return files


def write_epic55_annotations(out_dir: str | os.PathLike, plan: Sequence[EpicVideo]) -> None:
    """Every EPIC-55 annotation file of the world (see the module docstring). Many-shot
    classes follow the real rule with a smaller count (:data:`MANY_SHOT_MORE_THAN`): a verb
    or noun with more than 5 training segments, an action whose verb and noun are many-shot
    and which occurs in training; each list most frequent first."""
    out_dir = Path(out_dir)
    files = epic55_narrations(plan)
    epic55.write_epic55_narrations(out_dir / epic55.TRAIN_LABELS, files["train"], labels=True)
    for test, name in epic55.TEST_TIMESTAMPS.items():
        epic55.write_epic55_narrations(out_dir / name, files[test], labels=False)
    names = {"verb": [v.key for v in VERBS], "noun": [n.key for n in NOUNS]}
    for kind, classes in (("verb", VERBS), ("noun", NOUNS)):
        epic55.write_epic55_classes(out_dir / epic55.CLASS_FILES[kind], kind, names[kind],
                                    [c.instances for c in classes])
    many = epic55.many_shot_classes(files["train"], MANY_SHOT_MORE_THAN)
    epic55.write_many_shot_classes(out_dir / epic55.MANY_SHOT_FILES["verb"], "verb", many.verbs, names["verb"])
    epic55.write_many_shot_classes(out_dir / epic55.MANY_SHOT_FILES["noun"], "noun", many.nouns, names["noun"])
    epic55.write_many_shot_actions(out_dir / epic55.MANY_SHOT_FILES["action"], many.actions, names["verb"],
                                   names["noun"])
    epic55.write_epic55_video_info(out_dir / epic55.VIDEO_INFO, [
        EpicVideoInfo(v.video_id, v.duration, v.native_fps, f"{v.scene.width}x{v.scene.height}")
        for v in sorted(plan, key=lambda v: v.video_id)])


def epic55_counts(plan: Sequence[EpicVideo]) -> dict[str, Any]:
    """What the demo stage's metrics report of the world: segments and participants per file,
    the many-shot classes, the seconds of video."""
    files = epic55_narrations(plan)
    many = epic55.many_shot_classes(files["train"], MANY_SHOT_MORE_THAN)
    return {"segments": {name: len(rows) for name, rows in files.items()},
            "participants": {name: len({n.participant_id for n in rows}) for name, rows in files.items()},
            "videos": dict(Counter("train" if v.split == "train" else "test" for v in plan)),
            "many_shot": {"verbs": len(many.verbs), "nouns": len(many.nouns), "actions": len(many.actions)},
            "video_seconds": round(sum(v.duration for v in plan), 2)}
