"""The real DVC pipeline on a tiny config: repro, a no-op second repro, and an experiment."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from avsf.io.machine import cpu_description
from conftest import DVC_PROJECT, REPO, run_stage
from dvc_project import DATASETS, EXPERIMENT, EXPERIMENT_LOG, FIRST_REPRO, Build, dvc, sh
from pipeline.layout import DATA, REPORTS, Layout
from pipeline.params import load_params
from pipeline.runs import finetune_run, kinetics_run, pretrain_run

# The module's project fixture runs the whole tiny pipeline once: more than a single test's time.
pytestmark = pytest.mark.timeout(1800)


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(request, tmp_path_factory) -> Path:
    """tests/dvc_project.py's project: started at the session's start by conftest when other
    tests run too, else here."""
    build = request.config.stash.get(DVC_PROJECT, None) or Build(tmp_path_factory.mktemp("dvc") / "project")
    return build.wait(timeout=1500)


def stage_names(root: Path) -> set[str]:
    """Every stage dvc.yaml defines, each foreach and matrix item expanded, as DVC lists them."""
    return {line.split()[0] for line in dvc("stage", "list", cwd=root).splitlines() if line.strip()}


def test_repro_runs_every_stage_and_writes_metrics(project):
    assert ran_stages((project / FIRST_REPRO).read_text()) == stage_names(project)
    demo = json.loads((project / "reports/kinetics/metrics/demo.json").read_text())
    assert demo["rows"] == 8 * 3 + 1  # 3 videos per class, plus one val row whose source is missing
    assert demo["videos"] == 8 * 3
    download = json.loads((project / "reports/kinetics/metrics/download.json").read_text())
    # Every good row is downloaded; the corrupt file and the missing source are failures.
    assert download["downloaded"] == demo["rows"] - 2
    assert download["failed"] == 2
    failed = {reason: n for reason, n in download["failed_by_reason"].items() if n}
    assert failed == {"corrupt_container": 1, "missing_source": 1}
    clips = (project / "data/kinetics/clips/clips.csv").read_text().splitlines()
    assert len(clips) == 1 + download["downloaded"]
    # every later stage reads the annotation files download copied
    assert sorted(p.name for p in (project / "data/kinetics/annotations").iterdir()) == [
        "kinetics_demo_train.csv", "kinetics_demo_val.csv"]


def test_second_repro_does_nothing(project):
    output = dvc("repro", cwd=project)
    assert ran_stages(output) == set()
    assert "up to date" in output


def test_training_curves_are_dvc_plots(project):
    result = sh(sys.executable, "-m", "dvc", "plots", "show", "--json", cwd=project)
    data = json.loads(result.stdout)["data"]
    loss = data["reports/kinetics/train/avslowfast/plots/metrics/steps/loss.tsv"][0]
    assert "reports/kinetics/train/slowfast/plots/metrics/steps/loss.tsv" in data
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
    with (project / "reports/kinetics/models/avslowfast/results/predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and [r["clip_id"] for r in rows if r["predicted"] == "(no prediction)"] == metrics["missing_ids"]
    summary = (project / "reports/kinetics/summary.md").read_text()
    assert "| SlowFast (`slowfast_tiny_2x8`) |" in summary and "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary
    assert "SlowFast beats Slow-only on the motion classes: **not measured**" in summary  # no Slow-only member here
    plots = json.loads(sh(sys.executable, "-m", "dvc", "plots", "show", "--json", cwd=project).stdout)["data"]
    assert "reports/kinetics/models/slowfast/per_class.csv" in plots
    # The machine that trained and evaluated it (here in-process jobs: launch.cluster debug, no pin),
    # under the summary's title, and a string `dvc metrics show` shows as it is
    assert metrics["machine"].startswith(cpu_description() + ", torch ") and metrics["trained_on"] == metrics["machine"]
    assert summary.split("\n\n")[1] == f"Machine: trained and evaluated on {metrics['machine']}."
    shown = json.loads(sh(sys.executable, "-m", "dvc", "metrics", "show", "--json", cwd=project).stdout)
    assert shown[""]["data"]["reports/kinetics/models/avslowfast/metrics.json"]["data"]["machine"] == metrics["machine"]


def test_every_stage_declares_exactly_where_the_layout_puts_its_outputs():
    """dvc.yaml's outs, metrics and plots of every stage, as DVC resolves them, are the paths
    pipeline.layout gives the stages (one statement of the layout, read by both)."""
    from dvc.repo import Repo

    params = load_params(REPO / "params.yaml")
    layout = Layout.of(params.layout)
    with Repo(str(REPO)) as repo:
        declared = {stage.addressing: {o.def_path for o in stage.outs} for stage in repo.index.stages}

    def run(paths) -> set:
        return {paths.out_dir, paths.summary, paths.live_dir / "metrics.json",
                *(paths.live_dir / "plots/metrics" / kind for kind in ("steps", "epochs"))}

    def model(dataset: str, member: str) -> set:
        return {layout.model(dataset, member) / name for name in ("results", "metrics.json", "per_class.csv")}

    expected: dict[str, set] = {"model_report": {layout.model_report() / "flops.json", layout.model_report() / "flops.md"}}
    for d in params.datasets:
        expected[f"demo@{d}"] = {layout.demo(d), layout.metrics(d, "demo")}
        # the data folders by their inventories (pipeline/inventory.py): DVC never hashes their bytes
        expected[f"download@{d}"] = {layout.annotations(d), layout.clips(d) / DATA["inventory"],
                                     layout.ledger(d, "download"), layout.metrics(d, "download")}
        expected[f"decode@{d}"] = {layout.frames(d) / DATA["inventory"], layout.ledger(d, "decode"),
                                   layout.metrics(d, "decode")}
        expected[f"spectrogram@{d}"] = {layout.logmel(d) / DATA["inventory"], layout.ledger(d, "spectrogram"),
                                        layout.metrics(d, "spectrogram")}
    for m in params.family:
        expected[f"train@{m}"] = run(kinetics_run(params, m).paths)
        expected[f"evaluate@kinetics-{m}"] = model("kinetics", m)
    for d in params.finetune.datasets:
        for m in params.finetune.members:
            expected[f"finetune@{d}-{m}"] = run(finetune_run(params, d, m).paths)
            expected[f"evaluate_finetuned@{d}-{m}"] = model(d, m)
    for s in params.ssl.settings:
        expected[f"pretrain@{s}"] = run(pretrain_run(params, s).paths)
        expected[f"probe@{s}"] = {layout.probe(s), layout.model("ssl", s) / "metrics.json"}
    for r in ("random", "supervised"):
        expected[f"probe_reference@{r}"] = {layout.probe(r), layout.model("ssl", r) / "metrics.json"}
    for report in ("kinetics", *params.finetune.datasets, "ssl"):
        expected[f"summary@{report}"] = {layout.summary(report), layout.summary_metrics(report),
                                         layout.reports / report / REPORTS["figures"]}
    assert declared == {stage: {str(p) for p in paths} for stage, paths in expected.items()}



def test_no_stage_depends_on_a_data_folder_only_on_its_inventory():
    """A dependency on the clips or a store folder would make DVC hash its terabytes again."""
    from dvc.repo import Repo

    params = load_params(REPO / "params.yaml")
    layout = Layout.of(params.layout)
    folders = {str(f(d)) for d in params.datasets for f in (layout.clips, layout.frames, layout.logmel)}
    with Repo(str(REPO)) as repo:
        deps = {(stage.addressing, d.def_path) for stage in repo.index.stages for d in stage.deps}
    assert not {(stage, path) for stage, path in deps if path in folders}
    inventories = {path for _, path in deps if path.endswith("/" + DATA["inventory"])}
    assert inventories == {f"{folder}/{DATA['inventory']}" for folder in folders}


def test_every_stage_that_starts_from_weights_depends_on_them():
    """A probe reads its backbone's final.pyth, a fine-tuning its Kinetics run's: each is a dependency,
    so that a retrained backbone reruns what was computed from it (a probe once missed it)."""
    from dvc.repo import Repo

    params = load_params(REPO / "params.yaml")
    with Repo(str(REPO)) as repo:
        deps = {stage.addressing: {d.def_path for d in stage.deps} for stage in repo.index.stages}
    expected = {f"probe@{s}": pretrain_run(params, s).paths.out_dir / "final.pyth" for s in params.ssl.settings}
    expected["probe_reference@supervised"] = kinetics_run(params, params.ssl.supervised_member).paths.out_dir / "final.pyth"
    for d in params.finetune.datasets:
        for m in params.finetune.members:
            expected[f"finetune@{d}-{m}"] = kinetics_run(params, m).paths.out_dir / "final.pyth"
    for stage, weights in expected.items():
        assert str(weights) in deps[stage], stage

def test_epic_is_fine_tuned_from_the_kinetics_runs_and_scored_on_every_narration(project):
    import pickle

    import torch

    from avsf.data.epic import read_epic_annotations

    narrations = read_epic_annotations(project / "data/demo/epic/EPIC_100_validation.csv")
    metrics = json.loads((project / "reports/epic/models/avslowfast/metrics.json").read_text())
    assert metrics["narrations"] == len(narrations) and metrics["official"]["segments"] == len(narrations)
    assert {"verb_top1", "noun_top1", "action_top1", "verb_top5", "tail", "unseen", "noun_groups"} <= set(metrics)
    assert metrics["unseen"]["segments"] == sum(n.participant_id == "P03" for n in narrations) > 0
    with (project / "reports/epic/models/avslowfast/results/submission.pkl").open("rb") as f:
        submission = pickle.load(f)
    assert list(submission["narration_id"]) == [n.narration_id for n in narrations]
    assert type(submission["verb_output"]) is np.ndarray and submission["noun_output"].shape[0] == len(narrations)
    # BN frozen (A.5): every BN statistic of the fine-tuned model is the Kinetics run's
    kinetics = torch.load(project / "data/kinetics/train/slowfast/final.pyth", weights_only=False)["model_state"]
    epic = torch.load(project / "data/epic/train/slowfast/final.pyth", weights_only=False)["model_state"]
    stats = [k for k in kinetics if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(kinetics[k], epic[k]) for k in stats)
    assert not torch.equal(kinetics["s1.pathway0_stem.conv.weight"], epic["s1.pathway0_stem.conv.weight"])
    assert "head.projection_verb.weight" in epic and "head.projection.weight" not in epic
    summary = (project / "reports/epic/summary.md").read_text()
    assert "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary and "nouns told apart by sound" in summary


def test_epic55_is_validated_on_its_held_out_participant_and_predicts_both_test_sets(project):
    """EPIC-55 on the EPIC-100 demo's world (its own videos, the same as demo@epic's with the
    same settings): a verb and a noun model per member, validated on P02's train labels, the
    S1 and S2 test sets in the server's files."""
    from avsf.data import epic55 as files
    from avsf.data.store import read_index
    from avsf.evaluate.epic55 import read_epic55_submission

    demo = project / "data/demo/epic55"
    videos = sorted((demo / "videos").iterdir())
    assert videos and [v.read_bytes() for v in videos] == [
        (project / "data/demo/epic/videos" / v.name).read_bytes() for v in videos]
    train = files.read_epic55_narrations(demo / files.TRAIN_LABELS)
    held_out = {n.video_id for n in train if n.participant_id == "P02"}
    stored = {e.youtube_id: e.split for e in read_index(project / "data/epic55/store/frames/index.csv")}
    assert held_out and {v for v, split in stored.items() if split == "val"} == held_out
    assert (project / "data/epic55/train/avslowfast/verb/final.pyth").is_file()
    assert (project / "data/epic55/train/avslowfast/noun/final.pyth").is_file()
    metrics = json.loads((project / "reports/epic55/models/avslowfast/metrics.json").read_text())
    assert metrics["segments"] == sum(n.participant_id == "P02" for n in train) and metrics["heads"] == "separate"
    assert metrics["official"]["segments"] == metrics["segments"] and "many_shot" in metrics
    results = project / "reports/epic55/models/avslowfast/results"
    for test, name in (("s1", "seen.json"), ("s2", "unseen.json")):
        uids = [n.narration_id for n in files.read_epic55_narrations(demo / files.TEST_TIMESTAMPS[test])]
        submission = read_epic55_submission(results / name, uids, 5, 8)
        assert submission.uids == uids and metrics["test_sets"][test]["segments"] == len(uids) > 0
    summary = (project / "reports/epic55/summary.md").read_text()
    assert summary.startswith("# EPIC-Kitchens-55") and "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary
    assert "Audio helps the nouns most" in summary


def test_charades_is_scored_with_both_map_figures_and_written_in_the_official_format(project):
    from avsf.data.charades import read_charades
    from avsf.evaluate.charades import read_charades_predictions

    videos = read_charades(project / "data/demo/charades/Charades_v1_test.csv")
    metrics = json.loads((project / "reports/charades/models/slowfast/metrics.json").read_text())
    assert metrics["videos"] == len(videos) and metrics["videos_without_actions"] == 1
    assert "map_official" in metrics and 0 <= metrics["map_sklearn"] <= 1
    predictions = read_charades_predictions(project / "reports/charades/models/slowfast/results/predictions.txt", 8)
    assert set(predictions) == {v.id for v in videos}
    assert (project / "reports/charades/summary.md").read_text().startswith("# Charades")


def test_ssl_pretrains_without_labels_probes_every_backbone_on_three_splits_and_summarises(project):
    import torch

    from avsf.data.ucf_hmdb import read_transfer_splits

    rotation = torch.load(project / "data/ssl/train/rotation/final.pyth", weights_only=False)
    assert rotation["model_state"]["head.projection.weight"].shape[0] == 4  # the rotation pretext's 4-way head
    avs = json.loads((project / "reports/ssl/train/avs/summary.json").read_text())
    assert set(avs["final"]) == {"loss", "load_failures", "videos"}  # AV-sync alone: no label metric
    assert avs["last_epoch"]["sync_loss"] > 0
    both = json.loads((project / "reports/ssl/train/avs_rotation/summary.json").read_text())
    assert both["last_epoch"]["sync_loss"] > 0 and "rotation_top1" in both["final"]
    assert json.loads((project / "reports/ssl/train/rotation/summary.json").read_text())["last_epoch"]["sync_loss"] == 0
    for backbone in ("random", "supervised", "rotation", "avs", "avs_rotation"):
        report = json.loads((project / f"reports/ssl/models/{backbone}/metrics.json").read_text())
        assert report == json.loads((project / f"data/ssl/probe/{backbone}/probe.json").read_text())
        for name, result in report["datasets"].items():
            splits = read_transfer_splits(name, project / f"data/demo/{name}")
            assert list(result["splits"]) == ["1", "2", "3"]
            for k, side in result["splits"].items():
                assert side["test_videos"] == len(splits.splits[int(k)][1]) and side["missing"] == 0
                assert side["train_clips"] == 2 * side["train_videos"]  # ssl.probe.train_views
            assert result["mean_top1"] == pytest.approx(np.mean([s["top1"] for s in result["splits"].values()]))
        assert report["machine"].startswith(cpu_description()) and ("trained_on" in report) == (backbone != "random")
    summary = (project / "reports/ssl/summary.md").read_text()
    assert summary.split("\n\n")[1].startswith("Machine: trained and evaluated on ")
    assert "| AVS + ROT (`avs_rotation`) | AVSlowFast |" in summary and "| ROT (`rotation`) | SlowFast |" in summary
    assert "beats random weights" in summary and "AVS + rotation (`avs_rotation`) beats AVS alone" in summary


def test_the_probe_that_trains_all_layers_fine_tunes_every_layer_per_split(project, tmp_path):
    """ssl.probe.mode=all: one engine run per split, its top-1 the run's validation on the test list."""
    import torch

    reports = tmp_path / "reports"
    done = run_stage("probe", "--backbone", "random", "--set", "ssl.probe.mode=all", "--set", "ssl.probe.splits=[2]",
                     "--set", "ssl.probe.datasets=[hmdb51]", "--set", f"layout.reports={reports}", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads((reports / "ssl/models/random/metrics.json").read_text())
    split = report["datasets"]["hmdb51"]["splits"]["2"]
    run_dir = project / "data/ssl/probe/random/hmdb51/split2"
    run_metrics = json.loads((run_dir / "summary.json").read_text())
    assert split["top1"] == pytest.approx(run_metrics["final"]["top1"]) and split["missing"] == 0
    state = torch.load(run_dir / "final.pyth", weights_only=False)
    assert state["model_state"]["head.projection.weight"].shape[0] == 6  # the HMDB flavour's classes
    assert run_metrics["steps"] > 0 and report["mode"] == "all"


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

    plan = plan_ava_world(AvaWorldSpec(**{k: tuple(map(tuple, v)) if k == "sizes" else v
                                          for k, v in params.datasets["ava"].demo.items()}))
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
    detections = read_ava_detections(project / "reports/ava/models/avslowfast/results/detections.csv")
    assert {d.action_id for d in detections} == set(read_action_list(ava / "ava_action_list_v2.2.pbtxt"))
    again = frame_map(truth, keyframes, detections, evaluated, excluded)  # the official results file, re-scored
    assert metrics["map"] == pytest.approx(again.mean_ap) and metrics["evaluated_classes"] == len(evaluated)
    assert metrics["excluded"] == len(excluded) > 0
    with (project / "reports/ava/models/avslowfast/per_class.csv").open() as f:
        counts = [int(r["count"]) for r in csv.DictReader(f)]
    assert counts == sorted(counts, reverse=True)  # most frequent first (SlowFast Fig. 3)
    summary = (project / "reports/ava/summary.md").read_text()
    assert "| AVSlowFast (`avslowfast_tiny_2x8`) |" in summary and "actions defined by their sound" in summary


def test_every_summary_embeds_its_figures_and_dvc_plots_shows_them(project):
    plots = json.loads(sh(sys.executable, "-m", "dvc", "plots", "show", "--json", cwd=project).stdout)["data"]
    expected = {"kinetics": ["curves", "per_class", "gain", "confusion"], "epic": ["verbs", "nouns"],
                "epic55": ["verbs", "nouns"], "charades": ["per_class"], "ava": ["class_ap"], "ssl": ["probe"]}
    for report, names in expected.items():
        folder = project / "reports" / report
        assert re.findall(r"\]\(figures/([a-z_]+)\.svg\)", (folder / "summary.md").read_text()) == names, report
        assert sorted(p.name for p in (folder / "figures").iterdir()) == sorted(f"{n}.svg" for n in names)
        assert {f"reports/{report}/figures/{n}.svg" for n in names} <= set(plots), report


# The experiment ran in a copy of the project (tests/dvc_project.py: EXPERIMENT_ARGS, the
# params and the stages run); `dvc status` then names every other stage the params reach, out
# of date, which a full run would have rerun (each is reached through its params).
def test_an_experiment_reruns_exactly_the_stages_its_params_reach_and_metrics_diff_shows_it(project):
    """download.retries reruns the downloads and nothing after them (their clips are the
    same); AVSlowFast's DropPathway retrains it, what is fine-tuned or probed from it and the
    summaries, nothing of SlowFast; datasets.epic.heads=separate refits both EPIC members as a
    verb and a noun model."""
    before = json.loads((project / "reports/kinetics/train/avslowfast/summary.json").read_text())
    project = project.parent / EXPERIMENT
    output = (project / EXPERIMENT_LOG).read_text()
    ran = ran_stages(output)
    downloads = {f"download@{d}" for d in DATASETS}
    assert downloads <= ran and not any(s.startswith(("demo@", "decode@")) for s in ran)
    assert ran - downloads == {"train@avslowfast", "spectrogram@epic", "finetune@epic-slowfast",
                               "evaluate_finetuned@epic-slowfast"}
    stale = set(json.loads(sh(sys.executable, "-m", "dvc", "status", "--json", cwd=project).stdout))
    assert not ran & stale
    assert (ran | stale) - downloads == {
        "train@avslowfast", "evaluate@kinetics-avslowfast", "summary@kinetics",
        *(f"{stage}@{d}-avslowfast" for stage in ("finetune", "evaluate_finetuned")
          for d in ("epic", "epic55", "charades", "ava")),
        "finetune@epic-slowfast", "evaluate_finetuned@epic-slowfast", "summary@epic", "summary@epic55", "summary@charades",
        "summary@ava",
        # the AVS backbones and the references (AVSlowFast's model) and their probes
        "pretrain@avs", "pretrain@avs_rotation", "probe@avs", "probe@avs_rotation", "probe_reference@random",
        "probe_reference@supervised", "summary@ssl",
        # Over-broad params deps (left for the per-dataset deps follow-up): spectrogram@<d> tracks all of
        # datasets.<d> (heads reruns it, its store comes out the same), probe@ all of family.
        "spectrogram@epic", "probe@rotation"}
    # The experiment's result is in the workspace: its params and the lock file that records them.
    assert yaml.safe_load((project / "params.yaml").read_text())["download"]["retries"] == 5
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["download@kinetics"]["params"]["params.yaml"]["download"]["retries"] == 5
    after = json.loads((project / "reports/kinetics/train/avslowfast/summary.json").read_text())
    assert after["fingerprint"] != before["fingerprint"] and after["resumed_from"] is None  # trained afresh
    diff = dvc("metrics", "diff", cwd=project)
    assert "reports/kinetics/train/avslowfast/summary.json" in diff
    table = sh(sys.executable, "-m", "dvc", "exp", "show", "--csv", cwd=project).stdout
    header = table.splitlines()[0]
    assert "family.avslowfast.drop_pathway" in header and "final.top1" in header and "top1" in header
    # EPIC's separate verb and noun models
    summary = json.loads((project / "reports/epic/train/slowfast/summary.json").read_text())
    assert set(summary) == {"verb", "noun"} and summary["verb"]["model"] == summary["noun"]["model"]
    assert (project / "data/epic/train/slowfast/verb/final.pyth").is_file()
    curves = {p.name for p in (project / "reports/epic/train/slowfast/plots/metrics/steps").glob("*.tsv")}
    assert {"verb_loss.tsv", "noun_loss.tsv"} <= curves
    assert json.loads((project / "reports/epic/models/slowfast/metrics.json").read_text())["heads"] == "separate"
