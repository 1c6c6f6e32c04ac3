"""The real DVC pipeline on a tiny config: repro, a no-op second repro, and an experiment."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, run_stage, write_params
from pipeline.params import load_params

# The module's project fixture runs the whole tiny pipeline once: more than a single test's time.
pytestmark = pytest.mark.timeout(1800)

PROJECT_FILES = ("dvc.yaml", "stages", "pipeline", "avsf", "reports")


def sh(*cmd: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(*args: str, cwd: Path) -> str:
    result = sh(sys.executable, "-m", "dvc", *args, cwd=cwd)
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with tiny params, as its own git + DVC repository, reproduced once."""
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "bench")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, root / name)
    # Jobs in-process (submitit's debug executor): the stages' own work as it runs anywhere,
    # without a second interpreter per stage (test_launch and test_slurm cover the executors).
    # Batches of 4: the 15 training clips make 3 steps, a curve, with the last incomplete batch dropped.
    write_params(root / "params.yaml", {"launch.cluster": "debug", "train.batch_size": 4, "train.reference_batch": 4})
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    sh("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "project", cwd=root)  # as a user's project has (DVCLive reads the revision)
    first = dvc("repro", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "tiny pipeline", cwd=root)
    (root / "first_repro.log").write_text(first)
    return root


def foreach_items(stage: dict, params: dict) -> list:
    """The items of a foreach stage (``${family}`` or ``${epic.members}``), [None] otherwise."""
    if "foreach" not in stage:
        return [None]
    if isinstance(stage["foreach"], list):
        return list(stage["foreach"])
    node = params
    for part in stage["foreach"].strip("${}").split("."):
        node = node[part]
    return list(node)


def test_repro_runs_every_stage_and_writes_metrics(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    stages = {name if member is None else f"{name}@{member}"
              for name, stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].items()
              for member in foreach_items(stage, params)}
    assert ran_stages((project / "first_repro.log").read_text()) == stages
    demo = json.loads((project / "reports/metrics/demo.json").read_text())
    assert demo["rows"] == 8 * 3 + 1  # 3 videos per class, plus one val row whose source is missing
    assert demo["videos"] == 8 * 3
    download = json.loads((project / "reports/metrics/download.json").read_text())
    # Every good row is downloaded; the corrupt file and the missing source are failures.
    assert download["downloaded"] == demo["rows"] - 2
    assert download["failed"] == 2
    failed = {reason: n for reason, n in download["failed_by_reason"].items() if n}
    assert failed == {"corrupt_container": 1, "missing_source": 1}
    clips = (project / "data/clips/clips.csv").read_text().splitlines()
    assert len(clips) == 1 + download["downloaded"]


def test_second_repro_does_nothing(project):
    output = dvc("repro", cwd=project)
    assert ran_stages(output) == set()
    assert "up to date" in output


def test_training_curves_are_dvc_plots(project):
    result = sh(sys.executable, "-m", "dvc", "plots", "show", "--json", cwd=project)
    data = json.loads(result.stdout)["data"]
    loss = data["reports/train/avslowfast/plots/metrics/steps/loss.tsv"][0]
    assert "reports/train/slowfast/plots/metrics/steps/loss.tsv" in data
    assert "val_top1" in " ".join(data) and loss["type"] == "vega"
    points = loss["content"]["data"]["values"]
    assert [int(p["step"]) for p in points] == list(range(1, len(points) + 1)) and len(points) >= 2


def test_evaluate_scores_every_manifest_video_and_the_summary_shows_the_family(project):
    metrics = json.loads((project / "reports/kinetics/models/avslowfast/metrics.json").read_text())
    # 8 classes x 1 val video, plus the val row whose source is missing: a miss in the official figure
    assert (metrics["official"]["videos"], metrics["missing"], metrics["available"]["videos"]) == (9, 1, 8)
    assert metrics["top1"] == metrics["official"]["top1"]
    assert metrics["official"]["top1"] == pytest.approx(metrics["available"]["top1"] * 8 / 9)
    assert metrics["views_per_video"] == 2 and metrics["gflops_x_views"] == pytest.approx(2 * metrics["gflops_per_view"], rel=1e-3)
    assert set(metrics["official"]["groups"]) == {"appearance", "motion", "sound", "audiovisual"}
    with (project / "reports/kinetics/models/avslowfast/predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and [r["clip_id"] for r in rows if r["predicted"] == "(no prediction)"] == metrics["missing_ids"]
    summary = (project / "reports/kinetics/summary.md").read_text()
    assert "| SlowFast (`slowfast_tiny_2x8`) |" in summary and "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary
    assert "SlowFast beats Slow-only on the motion classes: **not measured**" in summary  # no Slow-only member here
    plots = json.loads(sh(sys.executable, "-m", "dvc", "plots", "show", "--json", cwd=project).stdout)["data"]
    assert "reports/kinetics/models/slowfast/confusion.csv" in plots


def _resolve(text: str, params: dict, key: str) -> str:
    """dvc.yaml's ${...} interpolation of one string, for a foreach ``key``."""
    def value(match):
        name = match.group(1)
        if name == "key":
            return key
        node = params
        for part in name.split("."):
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([^}]+)\}", value, text)


def declared_paths(stages: dict, raw: dict, stage: str, key: str) -> set[str]:
    """The outs, metrics and plots dvc.yaml's foreach stage ``stage`` declares for ``key``."""
    do = stages[stage]["do"]
    paths = [next(iter(o)) if isinstance(o, dict) else o for kind in ("outs", "metrics", "plots")
             for o in do.get(kind, [])]
    return {_resolve(p.replace("${item}", key), raw, key) for p in paths}


def test_dvc_yaml_declares_the_paths_each_family_member_writes():
    """train@<member> and evaluate@<member> declare exactly where Params.variant puts the
    member's outputs (dvc.yaml cannot derive train_<member>.json from train.metrics)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = load_params(REPO / "params.yaml")

    def declared(stage: str, key: str) -> set[str]:
        return declared_paths(stages, raw, stage, key)

    for name in params.family:
        member = params.variant(name)
        t, e = member.train, member.evaluate
        assert declared("train", name) == {t.out_dir, t.ledger, t.metrics, f"{t.live_dir}/metrics.json",
                                           *(f"{t.live_dir}/plots/metrics/{x}" for x in ("steps", "epochs"))}
        assert declared("evaluate", name) == {f"{e.out_dir}/{f}" for f in ("predictions.csv", "metrics.json",
                                                                            "confusion.csv")}
        assert stages["train"]["foreach"] == stages["evaluate"]["foreach"] == "${family}"


def test_epic_is_fine_tuned_from_the_kinetics_runs_and_scored_on_every_narration(project):
    import pickle

    import torch

    from avsf.data.epic import read_epic_annotations

    narrations = read_epic_annotations(project / "data/demo/epic/EPIC_100_validation.csv")
    metrics = json.loads((project / "reports/epic/models/avslowfast/metrics.json").read_text())
    assert metrics["narrations"] == len(narrations) and metrics["official"]["segments"] == len(narrations)
    assert {"verb_top1", "noun_top1", "action_top1", "verb_top5", "tail", "unseen", "noun_groups"} <= set(metrics)
    assert metrics["unseen"]["segments"] == sum(n.participant_id == "P03" for n in narrations) > 0
    with (project / "reports/epic/models/avslowfast/submission.pkl").open("rb") as f:
        submission = pickle.load(f)
    assert list(submission["narration_id"]) == [n.narration_id for n in narrations]
    assert type(submission["verb_output"]) is np.ndarray and submission["noun_output"].shape[0] == len(narrations)
    # BN frozen (A.5): every BN statistic of the fine-tuned model is the Kinetics run's
    kinetics = torch.load(project / "data/train/slowfast/final.pyth", weights_only=False)["model_state"]
    epic = torch.load(project / "data/epic/train/slowfast/final.pyth", weights_only=False)["model_state"]
    stats = [k for k in kinetics if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(kinetics[k], epic[k]) for k in stats)
    assert not torch.equal(kinetics["s1.pathway0_stem.conv.weight"], epic["s1.pathway0_stem.conv.weight"])
    assert "head.projection_verb.weight" in epic and "head.projection.weight" not in epic
    summary = (project / "reports/epic/summary.md").read_text()
    assert "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary and "nouns told apart by sound" in summary


def test_charades_is_scored_with_both_map_figures_and_written_in_the_official_format(project):
    from avsf.data.charades import read_charades
    from avsf.evaluate.charades import read_charades_predictions

    videos = read_charades(project / "data/demo/charades/Charades_v1_test.csv")
    metrics = json.loads((project / "reports/charades/models/slowfast/metrics.json").read_text())
    assert metrics["videos"] == len(videos) and metrics["videos_without_actions"] == 1
    assert "map_official" in metrics and 0 <= metrics["map_sklearn"] <= 1
    predictions = read_charades_predictions(project / "reports/charades/models/slowfast/predictions.txt", 8)
    assert set(predictions) == {v.id for v in videos}
    assert (project / "reports/charades/summary.md").read_text().startswith("# Charades")


def test_dvc_yaml_declares_the_paths_each_fine_tuned_member_writes():
    """train_<dataset>@<member> and evaluate_<dataset>@<member> declare where Params.finetune
    puts the member's outputs, for both fine-tuning datasets."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = load_params(REPO / "params.yaml")

    def declared(stage: str, key: str) -> set[str]:
        return declared_paths(stages, raw, stage, key)

    for dataset, files in (("epic", ("predictions.csv", "submission.pkl", "metrics.json", "noun_accuracy.csv")),
                           ("charades", ("predictions.txt", "metrics.json", "class_ap.csv")),
                           ("ava", ("detections.csv", "metrics.json", "class_ap.csv"))):
        for name in getattr(params, dataset).members:
            member = params.finetune(dataset, name)
            t, e = member.train, member.evaluate
            assert declared(f"train_{dataset}", name) == {
                t.out_dir, t.ledger, t.metrics, *(f"{t.live_dir}/plots/metrics/{x}" for x in ("steps", "epochs"))}
            assert declared(f"evaluate_{dataset}", name) == {f"{e.out_dir}/{f}" for f in files}
        ingest = params.for_dataset(dataset)
        assert {_resolve(next(iter(o)) if isinstance(o, dict) else o, raw, "")
                for o in stages[f"decode_{dataset}"]["outs"]} == {ingest.decode.out_dir, ingest.decode.ledger}
        assert ingest.decode.out_dir == f"{getattr(params, dataset).root}/store/frames"


def test_ssl_pretrains_without_labels_probes_every_backbone_on_three_splits_and_summarises(project):
    import torch

    from avsf.data.ucf_hmdb import read_transfer_splits

    rotation = torch.load(project / "data/ssl/rotation/final.pyth", weights_only=False)
    assert rotation["model_state"]["head.projection.weight"].shape[0] == 4  # the rotation pretext's 4-way head
    avs = json.loads((project / "reports/ssl/pretrain/avs.json").read_text())
    assert set(avs["final"]) == {"loss", "load_failures", "videos"}  # AV-sync alone: no label metric
    assert avs["last_epoch"]["sync_loss"] > 0
    both = json.loads((project / "reports/ssl/pretrain/avs_rotation.json").read_text())
    assert both["last_epoch"]["sync_loss"] > 0 and "rotation_top1" in both["final"]
    assert json.loads((project / "reports/ssl/pretrain/rotation.json").read_text())["last_epoch"]["sync_loss"] == 0
    for backbone in ("random", "supervised", "rotation", "avs", "avs_rotation"):
        report = json.loads((project / f"reports/ssl/probe/{backbone}.json").read_text())
        assert report == json.loads((project / f"data/ssl/probe/{backbone}/probe.json").read_text())
        for name, result in report["datasets"].items():
            splits = read_transfer_splits(name, project / f"data/demo/{name}/splits")
            assert list(result["splits"]) == ["1", "2", "3"]
            for k, side in result["splits"].items():
                assert side["test_videos"] == len(splits.splits[int(k)][1]) and side["missing"] == 0
                assert side["train_clips"] == 2 * side["train_videos"]  # ssl.probe.train_views
            assert result["mean_top1"] == pytest.approx(np.mean([s["top1"] for s in result["splits"].values()]))
    summary = (project / "reports/ssl/summary.md").read_text()
    assert "| AVS + ROT (`avs_rotation`) | AVSlowFast |" in summary and "| ROT (`rotation`) | SlowFast |" in summary
    assert "beats random weights" in summary and "AVS + rotation (`avs_rotation`) beats AVS alone" in summary


def test_the_probe_that_trains_all_layers_fine_tunes_every_layer_per_split(project, tmp_path):
    """ssl.probe.mode=all: one engine run per split, its top-1 the run's validation on the test list."""
    import torch

    out, reports = tmp_path / "ssl", tmp_path / "reports"
    done = run_stage("probe", "--backbone", "random", "--set", "ssl.probe.mode=all", "--set", "ssl.probe.splits=[2]",
                     "--set", "ssl.probe.datasets=[hmdb51]", "--set", f"ssl.out_dir={out}",
                     "--set", f"ssl.reports={reports}", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads((reports / "probe/random.json").read_text())
    split = report["datasets"]["hmdb51"]["splits"]["2"]
    run_metrics = json.loads((out / "probe/random/hmdb51/split2/metrics.json").read_text())
    assert split["top1"] == pytest.approx(run_metrics["final"]["top1"]) and split["missing"] == 0
    state = torch.load(out / "probe/random/hmdb51/split2/final.pyth", weights_only=False)
    assert state["model_state"]["head.projection.weight"].shape[0] == 6  # the HMDB flavour's classes
    assert run_metrics["steps"] > 0 and report["mode"] == "all"


def test_dvc_yaml_declares_the_paths_pretraining_and_probing_write():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = load_params(REPO / "params.yaml")

    def declared(stage: str, key: str) -> set[str]:
        return declared_paths(stages, raw, stage, key)

    for setting in params.ssl.settings:
        t = params.pretrain(setting).train
        assert declared("pretrain", setting) == {t.out_dir, t.ledger, t.metrics, f"{t.live_dir}/metrics.json",
                                                 *(f"{t.live_dir}/plots/metrics/{x}" for x in ("steps", "epochs"))}
        assert declared("probe", setting) == {f"data/ssl/probe/{setting}", f"reports/ssl/probe/{setting}.json"}
    assert stages["probe_reference"]["foreach"] == ["random", "supervised"]


def test_ava_is_stored_at_30_fps_from_second_900_and_scored_with_the_official_frame_map(project):
    from avsf.data.ava import (read_action_list, read_ava_detections, read_ava_ground_truth,
                               read_excluded_timestamps)
    from avsf.data.demo.ava import plan_ava_world
    from avsf.data.store import read_index
    from avsf.evaluate.ava import frame_map

    ava = project / "data/demo/ava"
    entries = {e.youtube_id: e for e in read_index(project / "data/ava/store/frames/index.csv")}
    params = load_params(project / "params.yaml")
    from avsf.data.demo.ava import AvaWorldSpec

    plan = plan_ava_world(AvaWorldSpec(**params.ava.demo))
    assert {float(m.native_fps) for m in plan} > {30.0}  # movies at 23.976 and 25 fps too
    for movie in plan:  # frame 0 is movie second 900, whatever the native rate: keyframe s is frame (s - 900) x 30
        entry = entries[movie.video_id]
        assert entry.fps == 30.0
        last = max(k.timestamp for k in movie.keyframes if not k.excluded)
        end = min(last + 2.0, movie.movie_start_s + movie.scene.duration)
        assert entry.num_frames == pytest.approx((end - 900) * 30, abs=2)
    metrics = json.loads((project / "reports/ava/models/avslowfast/metrics.json").read_text())
    truth, keyframes = read_ava_ground_truth(ava / "ava_val_v2.2.csv")
    excluded = read_excluded_timestamps(ava / "ava_val_excluded_timestamps_v2.2.csv")
    evaluated = read_action_list(ava / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    detections = read_ava_detections(project / "reports/ava/models/avslowfast/detections.csv")
    assert {d.action_id for d in detections} == set(read_action_list(ava / "ava_action_list_v2.2.pbtxt"))
    again = frame_map(truth, keyframes, detections, evaluated, excluded)  # the official results file, re-scored
    assert metrics["map"] == pytest.approx(again.mean_ap) and metrics["evaluated_classes"] == len(evaluated)
    assert metrics["excluded"] == len(excluded) > 0
    with (project / "reports/ava/models/avslowfast/class_ap.csv").open() as f:
        counts = [int(r["count"]) for r in csv.DictReader(f)]
    assert counts == sorted(counts, reverse=True)  # most frequent first (SlowFast Fig. 3)
    summary = (project / "reports/ava/summary.md").read_text()
    assert "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary and "actions defined by their sound" in summary


# Last in this module: it changes the project for the tests after it. One `dvc exp run` for
# several checks, since each costs a pass over every stage.
def test_an_experiment_reruns_exactly_the_stages_its_params_reach_and_metrics_diff_shows_it(project):
    """download.retries reruns the downloads and nothing after them (their clips are the
    same); AVSlowFast's DropPathway retrains it, what is fine-tuned or probed from it and the
    summaries, nothing of SlowFast; epic.heads=separate refits both EPIC members as a verb and
    a noun model."""
    before = json.loads((project / "reports/metrics/train_avslowfast.json").read_text())
    output = dvc("exp", "run", "-S", "family.avslowfast.drop_pathway=0.0", "-S", "download.retries=5",
                 "-S", "epic.heads=separate", cwd=project)
    downloads = {"download", *(f"download_{d}" for d in ("epic", "charades", "ava", "ucf101", "hmdb51"))}
    assert "download" in ran_stages(output) and "demo" not in ran_stages(output)
    assert ran_stages(output) - downloads == {
        "train@avslowfast", "evaluate@avslowfast", "kinetics_summary",
        *(f"{stage}_{d}@avslowfast" for stage in ("train", "evaluate") for d in ("epic", "charades", "ava")),
        "train_epic@slowfast", "evaluate_epic@slowfast", "epic_summary", "charades_summary", "ava_summary",
        # the AVS backbones and the references (AVSlowFast's model) and their probes
        "pretrain@avs", "pretrain@avs_rotation", "probe@avs", "probe@avs_rotation", "probe_reference@random",
        "probe_reference@supervised", "ssl_summary"}
    # The experiment's result is in the workspace: its params and the lock file that records them.
    assert yaml.safe_load((project / "params.yaml").read_text())["download"]["retries"] == 5
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["download"]["params"]["params.yaml"]["download"]["retries"] == 5
    after = json.loads((project / "reports/metrics/train_avslowfast.json").read_text())
    assert after["fingerprint"] != before["fingerprint"] and after["resumed_from"] is None  # trained afresh
    diff = dvc("metrics", "diff", cwd=project)
    assert "reports/metrics/train_avslowfast.json" in diff
    table = sh(sys.executable, "-m", "dvc", "exp", "show", "--csv", cwd=project).stdout
    header = table.splitlines()[0]
    assert "family.avslowfast.drop_pathway" in header and "final.top1" in header and "top1" in header
    # EPIC's separate verb and noun models
    summary = json.loads((project / "reports/epic/metrics/train_slowfast.json").read_text())
    assert set(summary) == {"verb", "noun"} and summary["verb"]["model"] == summary["noun"]["model"]
    assert (project / "data/epic/train/slowfast/verb/final.pyth").is_file()
    curves = {p.name for p in (project / "reports/epic/train/slowfast/plots/metrics/steps").glob("*.tsv")}
    assert {"verb_loss.tsv", "noun_loss.tsv"} <= curves
    assert json.loads((project / "reports/epic/models/slowfast/metrics.json").read_text())["heads"] == "separate"
