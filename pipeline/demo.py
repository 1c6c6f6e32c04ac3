"""Stage ``demo``: write the built-in demo world, a local stand-in for a real video source."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from avsf.data.demo import ava as demo_ava
from avsf.data.demo import charades as demo_charades
from avsf.data.demo import epic as demo_epic
from avsf.data.demo import ucf_hmdb as demo_ucf_hmdb
from avsf.data.demo.kinetics import SPLITS, DemoVideo, KineticsWorldSpec, manifest_lines, plan_world, write_raw_video
from avsf.io.atomic import remove_stale_temporaries, write_json, write_text
from pipeline.launch import StageFailed, job_progress, run_shards
from pipeline.params import Params

FLAVOUR_DIR = "data/demo/{name}"  # dvc.yaml's demo_<name> outs; <name>.annotations and .source point here
FLAVOUR_METRICS = "reports/metrics/demo_{name}.json"

log = logging.getLogger("avsf.demo")

METRICS_PATH = "reports/metrics/demo.json"


def write_videos_shard(job: tuple[list[DemoVideo], str]) -> int:
    """One job: render the shard's raw videos; files already complete are kept (resume)."""
    videos, videos_dir = job
    written = 0
    for video in job_progress(videos, "demo videos", unit="video"):
        if video.scene is None or (Path(videos_dir) / f"{video.youtube_id}.mp4").exists():
            continue
        write_raw_video(video, videos_dir)
        written += 1
    return written


def run_demo(params: Params) -> None:
    """Write the demo world: raw untrimmed videos and Kinetics-format manifests.

    Output under demo.out_dir: videos/<youtube_id>.mp4 and kinetics_demo_{train,val}.csv,
    exactly as a real source would look to the download stage. Deterministic in params.
    """
    cfg = params.demo
    started = time.monotonic()
    spec = KineticsWorldSpec(**cfg.model_dump(exclude={"out_dir", "shards"}))
    videos = plan_world(spec)
    out_dir = Path(cfg.out_dir)
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(videos_dir)

    shards = [(videos[i :: cfg.shards], str(videos_dir)) for i in range(cfg.shards)]
    written = sum(run_shards("demo", write_videos_shard, [s for s in shards if s[0]], params.launch))
    for split in SPLITS:
        write_text(out_dir / f"kinetics_demo_{split}.csv", "\n".join(manifest_lines(videos, split)) + "\n")

    present = [v for v in videos if v.scene is not None]
    seconds = time.monotonic() - started
    metrics = {
        "rows": len(videos),
        "videos": len(present),
        "written": written,
        "by_split": dict(Counter(v.split for v in videos)),
        "by_class": dict(Counter(v.label for v in videos)),
        "without_audio": sum(v.scene.sample_rate is None for v in present),
        "corrupt": sum(v.corrupt for v in videos),
        "missing_sources": len(videos) - len(present),
        "video_seconds": round(sum(v.scene.duration for v in present), 2),
        "seconds": round(seconds, 2),
    }
    write_json(METRICS_PATH, metrics)
    log.info("demo: %d videos (%d written now, %d without audio, %d corrupt, %d rows missing) "
             "in %.1f s, %.1f videos/s", len(present), written, metrics["without_audio"],
             metrics["corrupt"], metrics["missing_sources"], seconds, written / max(seconds, 1e-9))


# --------------------------------------------------------------------------- flavours


@dataclass(frozen=True)
class Flavour:
    """What the stage needs of a demo flavour's module (avsf.data.demo.<name>)."""

    Spec: type
    plan: Callable[[Any], list]
    write_video: Callable[[Any, str], Path]
    write_annotations: Callable[[Path, list], None]
    video_name: Callable[[Any], str]
    counts: Callable[[list], dict[str, Any]]


def _epic_counts(plan: list) -> dict[str, Any]:
    return {"segments": dict(Counter(v.split for v in plan for _ in v.segments)),
            "participants": len({v.participant_id for v in plan}),
            "video_seconds": round(sum(v.duration for v in plan), 2)}


def _charades_counts(plan: list) -> dict[str, Any]:
    return {"by_split": dict(Counter(v.split for v in plan)), "without_actions": sum(not v.actions for v in plan),
            "actions": sum(len(v.actions) for v in plan), "video_seconds": round(sum(v.length for v in plan), 2)}


def _ava_counts(plan: list) -> dict[str, Any]:
    return {"movies": dict(Counter(m.split for m in plan)),
            "person_keyframes": sum(len(k.people) for m in plan for k in m.keyframes)}


def _probe_counts(plan: list) -> dict[str, Any]:
    """Videos per class, and split 1's train / test / unused counts."""
    return {"classes": len({v.label for v in plan}),
            "split1": dict(Counter({1: "train", 2: "test", 0: "unused"}[v.tags[0]] for v in plan)),
            "video_seconds": round(sum(v.scene.duration for v in plan), 2)}


FLAVOURS = {
    "epic": Flavour(demo_epic.EpicWorldSpec, demo_epic.plan_epic_world, demo_epic.write_epic_video,
                    demo_epic.write_epic_annotations, lambda v: f"{v.video_id}.MP4", _epic_counts),
    "charades": Flavour(demo_charades.CharadesWorldSpec, demo_charades.plan_charades_world,
                        demo_charades.write_charades_video, demo_charades.write_charades_annotations,
                        lambda v: f"{v.id}.mp4", _charades_counts),
    "ava": Flavour(demo_ava.AvaWorldSpec, demo_ava.plan_ava_world, demo_ava.write_ava_movie,
                   demo_ava.write_ava_annotations, lambda m: m.file_name, _ava_counts),
    "ucf101": Flavour(demo_ucf_hmdb.UcfWorldSpec, demo_ucf_hmdb.plan_ucf_world, demo_ucf_hmdb.write_probe_video,
                      demo_ucf_hmdb.write_ucf_annotations, lambda v: v.path, _probe_counts),
    "hmdb51": Flavour(demo_ucf_hmdb.HmdbWorldSpec, demo_ucf_hmdb.plan_hmdb_world, demo_ucf_hmdb.write_probe_video,
                      demo_ucf_hmdb.write_hmdb_annotations, lambda v: v.path, _probe_counts),
}


def render_flavour_shard(job: tuple[str, list[Any], str]) -> int:
    """One job of a flavour: render its share of the videos; complete files are kept (resume)."""
    name, videos, videos_dir = job
    module = FLAVOURS[name]
    written = 0
    for video in job_progress(videos, f"demo {name} videos", unit="video"):
        if (Path(videos_dir) / module.video_name(video)).exists():
            continue
        module.write_video(video, videos_dir)
        written += 1
    return written


def run_flavour(params: Params, name: str) -> None:
    """Write demo flavour ``name`` (epic, charades, ava, ucf101, hmdb51) to data/demo/<name>: its videos (rendered in
    demo.shards jobs) and its annotation files in the dataset's own formats."""
    module = FLAVOURS[name]
    started = time.monotonic()
    try:
        # (AVA's file offset is one fact: ava.movie_start_s, which the pipeline reads too)
        offset = {"movie_start_s": params.ava.movie_start_s} if name == "ava" else {}
        spec = module.Spec(**{**getattr(params, name).demo, **offset})
    except TypeError as exc:  # (params.py checks the keys; this is the last guard)
        raise StageFailed(f"{name}.demo: {exc}") from None
    plan = module.plan(spec)
    out_dir = Path(FLAVOUR_DIR.format(name=name))
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(videos_dir)
    shards = [(name, plan[i :: params.demo.shards], str(videos_dir)) for i in range(params.demo.shards)]
    written = sum(run_shards(f"demo_{name}", render_flavour_shard, [s for s in shards if s[1]], params.launch))
    module.write_annotations(out_dir, plan)
    metrics = {"videos": len(plan), "written": written, **module.counts(plan), "seconds": round(time.monotonic() - started, 2)}
    write_json(FLAVOUR_METRICS.format(name=name), metrics)
    log.info("demo_%s: %d videos (%d written now), %s in %.1f s", name, len(plan), written,
             ", ".join(f"{k} {v}" for k, v in module.counts(plan).items()), metrics["seconds"])


def run_demo_epic(params: Params) -> None:
    """Write the EPIC-Kitchens-style demo world to data/demo/epic: long kitchen videos
    (videos/<video_id>.MP4 at 50 and 59.94 fps, many narrated segments each) and the
    dataset's own files (EPIC_100_{train,validation}.csv, EPIC_100_video_info.csv, the verb
    and noun classes, the tail lists and the unseen participants). Settings: epic.demo."""
    run_flavour(params, "epic")


def run_demo_charades(params: Params) -> None:
    """Write the Charades-style demo world to data/demo/charades: 20-30 s videos with two to
    four overlapping actions each, some with none annotated (videos/<id>.mp4), and the
    dataset's own files (Charades_v1_{train,test}.csv, Charades_v1_classes.txt). Settings:
    charades.demo."""
    run_flavour(params, "charades")


def run_demo_ucf101(params: Params) -> None:
    """Write the UCF101-style demo world to data/demo/ucf101: short clips of 8 classes the
    Kinetics demo does not have (videos/<Class>/v_<Class>_gGG_cCC.avi, 25 fps, MPEG-4 and PCM
    as UCF101 holds them) and its split files (splits/classInd.txt, trainlist0{1,2,3}.txt,
    testlist0{1,2,3}.txt; CRLF). Settings: ucf101.demo."""
    run_flavour(params, "ucf101")


def run_demo_hmdb51(params: Params) -> None:
    """Write the HMDB51-style demo world to data/demo/hmdb51: short clips of 6 classes of its
    own (videos/<class>/<video>.avi, 30 fps) and its split files
    (splits/<class>_test_split{1,2,3}.txt, each line <video>.avi 1|2|0). Settings: hmdb51.demo."""
    run_flavour(params, "hmdb51")


def run_demo_ava(params: Params) -> None:
    """Write the AVA-style demo world to data/demo/ava: film segments at 23.976, 25 and 30 fps
    (videos/<id>.mp4|.mkv; a file's t = 0 is movie second ava.movie_start_s, 898 in the
    demo) with 2-4 people whose boxes move, labelled at 1 fps keyframes from 0902 with pose,
    motion and sound actions, and AVA v2.2's files: ava_{train,val}_v2.2.csv, the action
    lists, excluded timestamps and a person detector's predicted boxes. Settings: ava.demo."""
    run_flavour(params, "ava")
