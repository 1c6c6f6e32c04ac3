"""Self-supervised pretraining's params (pipeline.runs.pretrain_run and the ssl section's checks), the
transfer datasets' params and download (UCF101's nested folders, whole videos), and the
summary's claims. The stages themselves run in tests/test_dvc.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, write_params
from pipeline.datasets import dataset
from pipeline.layout import Layout
from pipeline.params import ParamsError, load_params
from pipeline.runs import pretrain_run


def test_a_pretext_setting_is_its_member_trained_without_labels_in_its_own_place():
    params = load_params(REPO / "params.yaml")
    runs = {s: pretrain_run(params, s) for s in ("avs_rotation", "rotation", "avs")}
    both, rotation, avs = (runs[s].params for s in ("avs_rotation", "rotation", "avs"))
    assert (both.model.arch, both.train.objective, both.train.sync_weight) == ("avslowfast", "rotation", 1.0)
    assert (rotation.model.arch, rotation.train.objective, rotation.train.sync_weight) == ("slowfast", "rotation", 0.0)
    assert (avs.train.objective, avs.train.sync_weight) == ("sync", 1.0)
    t, paths = both.train, runs["avs_rotation"].paths
    assert (paths.out_dir, paths.live_dir, paths.summary, paths.ledger) == (
        Path("data/ssl/train/avs_rotation"), Path("reports/ssl/train/avs_rotation"),
        Path("reports/ssl/train/avs_rotation/summary.json"), Path("data/ssl/train/avs_rotation/ledger.csv"))
    # the A.8 recipe from ssl.train: three x0.1 steps, a warm-up from 0.001, the sync curriculum
    assert t.lr_policy == "steps" and len(t.lr_steps) == 3 and t.warmup_start_lr == 0.001
    assert (t.hard_negatives_from, t.hard_negative_fraction) == (0.5, 0.25)
    assert runs["avs_rotation"].dataset.name == "kinetics"  # the Kinetics store
    assert runs["avs_rotation"].key("train.epochs") == "ssl.train.epochs"
    with pytest.raises(ParamsError, match="ssl.settings: no setting 'jigsaw'; settings: rotation, avs, avs_rotation"):
        pretrain_run(params, "jigsaw")


@pytest.mark.parametrize("overrides, message", [
    (["ssl.settings.bad={member: slowfast, pretexts: [avs]}"],
     "ssl.settings.bad.pretexts: avs needs an AVSlowFast member with model.sync true; slowfast is slowfast"),
    (["ssl.settings.bad={member: slow2, pretexts: [rotation]}"], "ssl.settings.bad.member: 'slow2' is not a family member"),
    (["ssl.settings.random={member: slowfast, pretexts: [rotation]}"], "ssl.settings.random: a setting's name is"),
    (["ssl.settings.Big={member: slowfast, pretexts: [rotation]}"], "ssl.settings.Big: a setting's name is"),
    (["ssl.settings.bad={member: slowfast, pretexts: []}"], "ssl.settings.bad.pretexts: List should have at least 1 item"),
    (["ssl.settings.bad={member: slowfast, pretexts: [jigsaw]}"], "ssl.settings.bad.pretexts.0: Input should be 'avs' or 'rotation'"),
    (["ssl.train.objective=labels"], "ssl.train.objective: unknown train key (the objective is the pretexts'"),
    (["ssl.probe.train.epochs=0"], "ssl.probe.train.epochs: Input should be greater than 0"),
    (["ssl.train.sync_weight=0"], "ssl.train.sync_weight: 0 switches AV-sync off, but ssl.settings.avs pretrains on"),
    (["ssl.settings.avs.pretexts=[avs, rotation]", "ssl.train.sync_weight=0"],
     "ssl.train.sync_weight: 0 switches AV-sync off, but ssl.settings.avs pretrains on avs"),
    (["ssl.probe.mode=frozen"], "ssl.probe.mode: Input should be 'linear' or 'all'"),
    (["ssl.probe.datasets=[ucf101, hmdb51]", "datasets.hmdb51=null"],
     "datasets.hmdb51: a mapping of its keys; allowed: annotations, source, demo"),
    (["ssl.random_member=slow2"], "ssl.random_member: 'slow2' is not a family member"),
    (["datasets.ucf101.demo.groups2=3"], "datasets.ucf101.demo.groups2: unknown key; allowed: seed, groups, clips_per"),
    (["train.objective=sync", "model.arch=slowfast", "ssl=null"],
     "train.objective: 'sync' learns AV-synchronisation alone (train@slow): it needs model.arch avslowfast with "
     "model.sync true and a sync weight > 0; here family.slow.arch is slow"),
])
def test_impossible_self_supervised_settings_are_refused_on_load(overrides, message):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_fine_tuning_run_cannot_take_a_pretext_objective():
    with pytest.raises(ParamsError, match="datasets.epic.train.objective: 'rotation' pretrains without labels on "
                                          "the Kinetics store; a run on epic learns its labels"):
        load_params(REPO / "params.yaml", ["datasets.epic.train.objective=rotation"])


def test_a_transfer_dataset_stores_every_video_once_under_its_root():
    params = load_params(REPO / "params.yaml")
    ucf, hmdb = dataset(params, "ucf101"), dataset(params, "hmdb51")
    assert ucf.section.source == "data/demo/ucf101/videos"
    assert [p.name for p in ucf.annotation_files(Path(ucf.section.annotations))] == [
        "classInd.txt", "trainlist01.txt", "testlist01.txt", "trainlist02.txt", "testlist02.txt",
        "trainlist03.txt", "testlist03.txt"]
    layout = Layout.of(params.layout)
    assert (layout.clips("ucf101"), layout.frames("ucf101"), layout.logmel("ucf101")) == (
        Path("data/ucf101/clips"), Path("data/ucf101/store/frames"), Path("data/ucf101/store/logmel"))
    assert layout.metrics("ucf101", "decode") == Path("reports/ucf101/metrics/decode.json")
    assert ucf.stats_split == hmdb.stats_split == "videos" and ucf.probed and not ucf.finetunable


def test_ucf_videos_are_found_in_their_class_folders_and_downloaded_whole(tmp_path, monkeypatch):
    from avsf.data.demo.ucf_hmdb import UcfWorldSpec, write_ucf_world
    from pipeline.download import run_download

    spec = UcfWorldSpec(groups=3, clips_per_group=1, test_groups=1, video_seconds=(1.0, 1.5), sizes=((32, 24),),
                        sample_rate=8000)
    plan = write_ucf_world(spec, tmp_path / "data/demo/ucf101")
    write_params(tmp_path / "params.yaml", {"launch.cluster": "debug"})
    monkeypatch.chdir(tmp_path)
    run_download(load_params("params.yaml"), "ucf101")
    metrics = json.loads((tmp_path / "reports/ucf101/metrics/download.json").read_text())
    assert metrics["downloaded"] == len(plan) == 24 and metrics["failed"] == 0 and metrics["cut_short"] == 0
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "data/ucf101/clips").glob("v_*.json")}
    by_id = {v.video_id: v for v in plan}
    assert set(records) == {f"{i}_000000_end" for i in by_id}  # the whole video: from 0 to its end
    for name, record in records.items():
        video = by_id[name.removesuffix("_000000_end")]
        assert record["duration"] == pytest.approx(video.scene.num_frames / video.scene.fps, abs=0.05)


def test_the_summary_states_both_claims_from_the_probes():
    from pipeline.ssl_summary import claims

    params = load_params(REPO / "params.yaml")

    def result(ucf: float, hmdb: float) -> dict:
        return {"datasets": {"ucf101": {"mean_top1": ucf}, "hmdb51": {"mean_top1": hmdb}}}

    results = {"random": result(0.2, 0.2), "supervised": result(0.8, 0.6), "rotation": result(0.3, 0.1),
               "avs": result(0.5, 0.3), "avs_rotation": result(0.6, 0.4)}
    lines = [claim.line for claim in claims(params, results)]
    assert lines[0] == ("- the self-supervised `rotation` backbone beats random weights (mean top-1 over the "
                        "datasets): **does not hold** (20.0% vs 20.0%)")
    assert lines[2].endswith("**holds** (50.0% vs 20.0%)")
    assert [line.split("**")[1] for line in lines[3:]] == ["holds", "holds"]  # vs ROT alone, vs AVS alone
    assert "beats AVS alone (`avs`" in lines[4]
