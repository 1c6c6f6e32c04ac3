"""EPIC-Kitchens-55 in the pipeline (pipeline.datasets.epic55): its params section, its splits,
its scoring (avsf.evaluate.epic55's, unchanged), the S1 / S2 submission files and its place in
the registry and dvc.yaml. The files are the demo world's, planned without rendering a video."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from avsf.data import epic55 as files
from avsf.data.demo.epic import EpicWorldSpec, plan_epic_world
from avsf.data.demo.epic55 import epic55_narrations, write_epic55_annotations
from avsf.evaluate.epic55 import epic55_metrics, read_epic55_submission
from conftest import REPO, invoke_stage, write_params
from pipeline.datasets import DATASETS, dataset
from pipeline.datasets.epic55 import PAPER_VALIDATION, Epic55Section, summary_markdown
from pipeline.params import ParamsError, load_params

VERBS, NOUNS = 5, 8  # the demo world's classes


@pytest.fixture(scope="module")
def plan():
    return plan_epic_world(EpicWorldSpec())  # P01-P03 film train and validation videos, P04 validation only


@pytest.fixture
def project(plan, tmp_path: Path) -> Path:
    """A working directory whose params hold out P02 and whose download copy of the annotations is
    the default demo world's EPIC-55 files."""
    write_params(tmp_path / "params.yaml", {"datasets.epic55.demo": {}, "datasets.epic.demo": {}})
    write_epic55_annotations(tmp_path / "data/epic55/annotations", plan)
    return tmp_path


def epic55(root: Path, *overrides: str):
    return dataset(load_params(root / "params.yaml", ["layout.data=" + str(root / "data"), *overrides]), "epic55")


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize("override, message", [
    ("datasets.epic55.val_participants=[p2]", "datasets.epic55.val_participants: 'p2' is not a participant id"),
    ("datasets.epic55.val_participants=[P01, P01]", "datasets.epic55.val_participants: a participant is listed twice"),
    ("datasets.epic55.val_participants=[]", "datasets.epic55.val_participants: Tuple should have at least 1 item"),
    ("datasets.epic55.test_split=s1", "datasets.epic55.test_split: Input should be 'val' (got 's1')"),
    ("datasets.epic55.heads=both", "datasets.epic55.heads: Input should be 'joint' or 'separate'"),
    ("datasets.epic55.val_participant=[P01]", "datasets.epic55.val_participant: unknown key; allowed: annotations"),
])
def test_a_wrong_epic55_setting_is_one_line_naming_its_key(override, message):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("datasets.epic55.val_participants=[kitchen2]", "datasets.epic55.val_participants: 'kitchen2' is not a participant id"),
    ("datasets.epic55.demo.participant=5", "datasets.epic55.demo.participant: unknown key"),
])
def test_a_stage_exits_2_on_a_wrong_epic55_setting_and_writes_nothing(tmp_path, override, message):
    write_params(tmp_path / "params.yaml")
    result = invoke_stage("demo", "--dataset", "epic55", "--set", override, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# --------------------------------------------------------------------------- splits


def test_train_is_the_train_labels_without_the_held_out_participants_and_val_is_theirs(project, plan):
    ds = epic55(project)
    labels = epic55_narrations(plan)
    train, val = ds.label_source("train").narrations, ds.label_source("val").narrations
    assert (ds.train_split, ds.test_split, ds.targets()) == ("train", "val", ["verb", "noun"])
    assert {n.participant_id for n in train} == {"P01", "P03"} and {n.participant_id for n in val} == {"P02"}
    assert sorted(n.narration_id for n in train + val) == sorted(n.narration_id for n in labels["train"])
    assert len(val) == sum(n.participant_id == "P02" for n in labels["train"]) > 0
    for test in ("s1", "s2"):  # the test sets: their uids, no labels
        segments = ds.label_source(test).narrations
        assert [n.narration_id for n in segments] == [n.narration_id for n in labels[test]]
        assert not any(n.labelled for n in segments)
    assert ds.class_names() == {"verb": ["take", "put", "wash", "hold", "shake"],
                                "noun": ["tap", "plate", "knife", "pan", "kettle", "microwave", "blender", "sponge"]}
    # Each video stored once, whole, in the split of its segments: the held-out participant's in val.
    splits = {s.youtube_id: s.split for s in ds.download_plan().segments}
    assert splits == {v.video_id: ("s2" if v.participant_id == "P04" else "s1") if v.split == "validation" else
                      ("val" if v.participant_id == "P02" else "train") for v in plan}
    assert ds.stats_split == "train"
    # Who is held out enters the training runs' fingerprint and the checkpoints' record.
    other = epic55(project, "datasets.epic55.val_participants=[P01]")
    assert other.digest() != ds.digest() and ds.record()["val_participants"] == ["P02"]
    assert {n.participant_id for n in other.label_source("train").narrations} == {"P02", "P03"}


@pytest.mark.parametrize("held_out, message", [
    ("[P26, P27]", "datasets.epic55.val_participants: none of P26, P27 is in EPIC_train_action_labels.csv "
                   "(participants: P01, P02, P03): the validation split would be empty"),
    ("[P01, P02, P03]", "datasets.epic55.val_participants: holds every participant of EPIC_train_action_labels.csv"),
])
def test_a_held_out_set_that_empties_a_split_is_a_params_error_naming_the_key(project, held_out, message):
    ds = epic55(project, f"datasets.epic55.val_participants={held_out}")
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ds.download_plan()


def test_the_default_holds_out_the_papers_participants_and_trains_separate_models():
    section = Epic55Section(annotations="a", source="b")
    assert section.val_participants == ("P26", "P27", "P28", "P29", "P30", "P31") and section.heads == "separate"


# --------------------------------------------------------------------------- scoring and submissions


def predictions(segments: list, rng: np.random.Generator, missing: set[int] = frozenset()) -> dict:
    """The evaluation job's output for one split and the separate verb and noun models, as
    EpicKitchens.predict makes it (every segment but ``missing``)."""
    rows = [i for i in range(len(segments)) if i not in missing]
    return {target: {"segments": rows, "logits": {"logits": rng.normal(size=(len(rows), k)).astype(np.float32)},
                     "failures": []} for target, k in (("verb", VERBS), ("noun", NOUNS))}


@pytest.fixture
def scored(project):
    ds = epic55(project)
    truth = ds.evaluation_truth()
    rng = np.random.default_rng(0)
    out = {"splits": {"val": predictions(truth["splits"]["val"], rng, missing={1}),
                      "s1": predictions(truth["splits"]["s1"], rng, missing={0}),
                      "s2": predictions(truth["splits"]["s2"], rng)},
           "model": "slowfast_tiny", "views_per_video": 1, "test_crop": 32, "gflops_per_view": 0.5, "params_m": 0.1}
    metrics, line = ds.score(None, out, truth, project / "reports")
    return ds, truth, out, metrics, line


def test_validation_scores_are_avsf_evaluate_epic55s(scored, project):
    ds, truth, out, metrics, line = scored
    val = truth["splits"]["val"]
    verb, noun, predicted = ds.narration_logits(out["splits"]["val"], val, truth["classes"])
    assert (verb[1] == 0).all() and not predicted[1] and predicted.sum() == len(val) - 1
    many = (files.read_many_shot_classes(ds.files / files.MANY_SHOT_FILES["verb"], "verb"),
            files.read_many_shot_classes(ds.files / files.MANY_SHOT_FILES["noun"], "noun"),
            files.read_many_shot_actions(ds.files / files.MANY_SHOT_FILES["action"]))
    expected = epic55_metrics(verb, noun, [n.verb_class for n in val], [n.noun_class for n in val], *many,
                              predicted=predicted)
    assert metrics["official"] == expected["official"] and metrics["available"] == expected["available"]
    assert metrics["verb_top1"] == expected["official"]["verb_top1"] and metrics["action_top5"] is not None
    assert metrics["many_shot"]["recall"]["noun"] == expected["official"]["recall"]["noun"]
    assert (metrics["segments"], metrics["missing"], metrics["missing_ids"]) == (len(val), 1, [val[1].narration_id])
    assert metrics["val_participants"] == ["P02"] and metrics["heads"] == "separate"
    assert set(metrics["noun_groups"]) == {"appearance", "sound"}
    json.dumps(metrics, allow_nan=False)  # DVC's metrics file
    assert f"on {len(val)} val segments (1 without a prediction)" in line


def test_the_test_sets_are_written_in_the_servers_format(scored, project):
    ds, truth, out, metrics, _ = scored
    results = project / "reports/results"
    for test, name in (("s1", "seen.json"), ("s2", "unseen.json")):
        segments = truth["splits"][test]
        read = read_epic55_submission(results / name, [n.narration_id for n in segments], VERBS, NOUNS)
        assert read.uids == [n.narration_id for n in segments]
        verb, noun, predicted = ds.narration_logits(out["splits"][test], segments, truth["classes"])
        # (the file keeps float32 logits as their shortest decimals)
        np.testing.assert_array_equal(read.verb.astype(np.float32), verb)
        np.testing.assert_array_equal(read.noun.astype(np.float32), noun)
        assert all(a is not None and 0 < len(a) <= 100 for a in read.actions)
        assert metrics["test_sets"][test] == {"file": name, "segments": len(segments), "participants":
                                              len({n.participant_id for n in segments}),
                                              "missing": int((~predicted).sum()), "non_finite": 0, "failed_views": 0}
    assert metrics["test_sets"]["s1"]["missing"] == 1  # its row: zero logits, as the server needs every segment
    with zipfile.ZipFile(results / "submission.zip") as archive:
        assert sorted(archive.namelist()) == ["seen.json", "unseen.json"]
        assert archive.read("seen.json") == (results / "seen.json").read_bytes()


def test_a_diverged_models_rows_are_sent_as_no_prediction_and_counted(project):
    ds = epic55(project)
    truth = ds.evaluation_truth()
    rng = np.random.default_rng(1)
    out = {"splits": {s: predictions(truth["splits"][s], rng) for s in ("val", "s1", "s2")},
           "model": "m", "views_per_video": 1, "test_crop": 32, "gflops_per_view": 0.5, "params_m": 0.1}
    out["splits"]["s2"]["noun"]["logits"]["logits"][0, 3] = np.nan
    metrics, _ = ds.score(None, out, truth, project / "reports")
    read = read_epic55_submission(project / "reports/results/unseen.json")
    assert (read.noun[0] == 0).all() and (read.verb[0] == 0).all() and metrics["test_sets"]["s2"]["non_finite"] == 1


# --------------------------------------------------------------------------- summary


def test_the_summary_is_table_2s_shape_with_the_papers_figures_and_its_claims(scored):
    _, _, _, metrics, _ = scored
    results = {"slowfast": {**metrics, "arch": "slowfast"},
               "avslowfast": {**metrics, "arch": "avslowfast", "model": "avslowfast_tiny",
                              "noun_top1": metrics["noun_top1"] + 10, "verb_top1": metrics["verb_top1"] + 2}}
    text = summary_markdown(results)
    assert text.startswith("# EPIC-Kitchens-55") and "| SlowFast (`slowfast_tiny`) |" in text
    assert "| [AVSlowFast 8x8 R101, the paper] | 58.7 | 83.6 | 31.7 | 58.4 | 24.2 | 43.6 |" in text
    assert "| [Δ, the paper] | +2.9 | +0.5 | +4.3 | +6.3 | +2.3 | +3.9 |" in text
    assert "| Δ AVSlowFast − SlowFast | +2.0 | +0.0 | +10.0 |" in text
    assert ("- Audio helps the nouns most: AVSlowFast's noun top-1 gain over SlowFast beats its verb and action gains "
            "(the paper: +4.3 vs +2.9 / +2.3): **holds** (10.0% vs 2.0%)") in text
    assert "AVSlowFast beats SlowFast in action top-1 (the paper: 21.9 -> 24.2): **does not hold**" in text
    assert "`results/seen.json`" in text and "`results/unseen.json`" in text
    alone = summary_markdown({"avslowfast": results["avslowfast"]})
    assert "Audio helps the nouns most" in alone and "**not measured**" in alone
    assert PAPER_VALIDATION["slowfast"]["noun_top1"] == 27.4


# --------------------------------------------------------------------------- registry and dvc.yaml


def test_epic55_is_registered_fine_tuned_and_summarised_by_dvc_yaml():
    from dvc.repo import Repo

    assert DATASETS["epic55"] == "pipeline.datasets.epic55:EpicKitchens55"
    params = load_params(REPO / "params.yaml")
    assert "epic55" in params.datasets and "epic55" in params.finetune.datasets
    assert yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]["epic55"]["demo"] == {}
    with Repo(str(REPO)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
    expected = {"demo@epic55", "download@epic55", "decode@epic55", "spectrogram@epic55", "summary@epic55",
                *(f"{stage}@epic55-{m}" for stage in ("finetune", "evaluate_finetuned") for m in params.finetune.members)}
    assert expected <= set(stages)
    # Its demo renders its own videos: download@epic55 depends on its own annotations (the demo
    # world, videos included), not on another stage's videos.
    deps = {d.def_path for d in stages["download@epic55"].deps}
    assert "data/demo/epic55" in deps and not any(p.startswith("data/demo/epic/") for p in deps)
    assert "avsf/data/epic55.py" in {d.def_path for d in stages["demo@epic55"].deps}
