"""AVA's params and download: the store from movie second 900 at 30 fps, whatever the source
file's offset within the movie, the detection head only for AVA. The stages run in
tests/test_dvc.py."""

from __future__ import annotations

from fractions import Fraction

import pytest

from avsf.data.ava import AvaBox, write_action_list, write_ava_ground_truth
from conftest import REPO
from pipeline.datasets import dataset
from pipeline.download import copy_annotations
from pipeline.layout import Layout
from pipeline.params import ParamsError, load_params
from pipeline.runs import finetune_run


def write_action_lists(directory) -> None:
    """AVA's two action lists (every class trained; the evaluated ones), as the download copies them."""
    write_action_list(directory / "ava_action_list_v2.2.pbtxt", {12: "stand", 14: "walk"})
    write_action_list(directory / "ava_action_list_v2.2_for_activitynet_2019.pbtxt", {12: "stand"})


def test_ava_fine_tunes_the_detection_head_on_a_30_fps_store_under_its_root(tmp_path):
    from avsf.data.demo.ava import AvaWorldSpec, plan_ava_world, write_ava_annotations

    annotations = tmp_path / "annotations"
    write_ava_annotations(annotations, plan_ava_world(AvaWorldSpec(train_movies=1, val_movies=1)))
    params = load_params(REPO / "params.yaml", [f"datasets.ava.annotations={annotations}",
                                                f"layout.data={tmp_path / 'data'}"])
    run = finetune_run(params, "ava", "avslowfast")
    ava, ds = run.params, run.dataset
    assert (ava.model.head, ava.model.arch, ds.decode_settings(ava.decode).fps) == ("ava", "avslowfast", 30.0)
    assert [p.name for p in ds.annotation_files(annotations)][:2] == ["ava_train_v2.2.csv", "ava_val_v2.2.csv"]
    assert (run.paths.out_dir, ava.train.init_checkpoint) == (
        tmp_path / "data/ava/train/avslowfast", str(tmp_path / "data/kinetics/train/avslowfast/final.pyth"))
    assert (ava.train.lr_policy, ava.train.weight_decay) == ("steps", 1e-7)  # A.7
    copy_annotations(ds)
    assert (ds.section.detection_score, ds.section.train_iou, ds.store_start_s) == (0.8, 0.9, 900.0)
    head = ds.head(ava.model)
    assert head.kind == "ava" and head.num_classes == len(ds.class_names()) == 8
    evaluated = ds.evaluation_truth()["evaluated"]
    assert set(evaluated) < set(ds.action_names())
    # the demo's kinds of action; on real AVA, the label map's label_type
    assert ds.action_groups(ds.action_names())["hand clap"] == "sound"
    assert ds.action_groups({12: "stand", 99: "not the demo's"}) == {"stand": "person movement"}


@pytest.mark.parametrize("overrides, message", [
    (["model.head=ava"], "model.head: kinetics trains the classification head, not 'ava' (train@slow)"),
    (["datasets.ava.detection_score=1.5"], "datasets.ava.detection_score: Input should be less than or equal to 1"),
    (["finetune.members=[slow2]"], "finetune.members: 'slow2' is not a family member"),
    (["datasets.ava.demo.movies=3"], "datasets.ava.demo.movies: unknown key; allowed: seed, train_movies"),
])
def test_impossible_ava_settings_are_refused_on_load(overrides, message):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("offset, start, end", [
    (898.0, 2.0, 907.0 + 2 - 898),  # the demo's segments: the file starts at movie second 898
    (900.0, 0.0, 9.0),  # a segment trimmed at 900 (PySlowFast's files)
    (0.0, 900.0, 909.0),  # a whole film
])
def test_each_movie_is_one_segment_from_second_900_in_the_file_s_own_times(tmp_path, offset, start, end):
    annotations = tmp_path / "annotations"
    write_ava_ground_truth(annotations / "ava_train_v2.2.csv", [AvaBox("m1", 902, (0.1, 0.1, 0.5, 0.9), 12, "0"),
                                                                AvaBox("m1", 907, (0.1, 0.1, 0.5, 0.9), 12, "0")])
    write_ava_ground_truth(annotations / "ava_val_v2.2.csv", [AvaBox("m2", 1798, (0.2, 0.1, 0.5, 0.9), 14, "1_")])
    write_action_lists(annotations)
    params = load_params(REPO / "params.yaml", [f"datasets.ava.annotations={annotations}",
                                                f"datasets.ava.movie_start_s={offset}", f"layout.data={tmp_path}"])
    ds = dataset(params, "ava")
    copy_annotations(ds)
    by_id = {s.youtube_id: s for s in ds.download_plan().segments}
    assert (by_id["m1"].time_start, by_id["m1"].time_end, by_id["m1"].split) == (start, end, "train")
    # AVA's last keyframe, 1798: the store ends at 1800
    assert (by_id["m2"].time_start, by_id["m2"].time_end, by_id["m2"].split) == (start, 1800.0 - offset, "val")


@pytest.mark.parametrize("native_fps", [Fraction(24000, 1001), Fraction(25)])
def test_the_store_frame_of_a_keyframe_shows_that_second_of_a_movie_at_any_native_rate(tmp_path, monkeypatch,
                                                                                       native_fps):
    """A film segment whose t = 0 is movie second 898, at a rate that is not 30, its frames
    numbered in stripes: downloaded and decoded by the stages' own code, store frame
    keyframe_frame(s) must show the movie at second s."""
    from avsf.data.ava import keyframe_frame
    from avsf.data.jpeg import decode_jpeg
    from avsf.data.store import StoreReader
    from avsf.io.media import write_video
    from clip_factory import frame_image, frame_index
    from conftest import write_params
    from pipeline.decode import run_decode
    from pipeline.download import run_download

    videos, annotations = tmp_path / "videos", tmp_path / "annotations"
    videos.mkdir()
    count = int(10 * native_fps)  # 898 .. 908 s: fewer than the stripes' 256
    write_video(videos / "movie1.mkv", (frame_image(k, 96, 64) for k in range(count)), native_fps)
    write_ava_ground_truth(annotations / "ava_train_v2.2.csv",
                           [AvaBox("movie1", s, (0.1, 0.1, 0.5, 0.9), 12, "0") for s in range(902, 907)])
    write_action_lists(annotations)
    write_params(tmp_path / "params.yaml", {"launch.cluster": "debug", "decode.short_side": 64})
    monkeypatch.chdir(tmp_path)
    params = load_params("params.yaml", [f"datasets.ava.annotations={annotations}", f"datasets.ava.source={videos}",
                                         "datasets.ava.movie_start_s=898", "datasets.ava.test_split=train"])
    run_download(params, "ava")
    run_decode(params, "ava")
    reader = StoreReader(Layout.of(params.layout).frames("ava"), None)
    (entry,) = reader.entries
    assert entry.fps == 30.0
    for second in range(902, 907):
        frame = keyframe_frame(second)
        shown = frame_index(decode_jpeg(reader.frames(entry, frame, frame + 1)[0]))
        assert abs(898 + shown / native_fps - second) <= 1 / native_fps  # the source frame nearest to it
