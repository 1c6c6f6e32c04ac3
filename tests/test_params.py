"""params.yaml validation: typed sections, one-line errors naming the key, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import re

import pytest
import yaml

from conftest import REPO, invoke_stage, run_stage, stage_main, write_params
from pipeline.layout import Layout
from pipeline.params import Params, ParamsError, load_params
from pipeline.runs import finetune_run, kinetics_run, pretrain_run

STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py"))


def test_repository_params_validate_into_typed_sections():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.download.workers >= 1
    assert params.launch.cluster in {"local", "slurm", "debug", "auto"}
    # Every section of the file is a typed section, and every typed section is in the file.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(Params.model_fields)


@pytest.mark.parametrize(
    "override, message",
    [
        ("download.wrkers=4", "download.wrkers: unknown key; allowed: keep_raw, workers, shards"),
        ("bogus.x=1", "bogus: unknown key; allowed: launch, layout, demo, download"),
        ("download.workers=many", "download.workers: Input should be a valid integer"),
        ("download.workers=0", "download.workers: Input should be greater than 0 (got 0)"),
        ("download.crf=60", "download.crf: Input should be less than or equal to 51 (got 60)"),
        ("launch.cluster=k8s", "launch.cluster: Input should be 'local', 'slurm', 'debug' or 'auto' (got 'k8s')"),
        ("launch.stage_resources.train.gpus=8", "launch.stage_resources.train.gpus: unknown key; allowed: timeout_min,"),
        ("datasets.kinetics.demo.raw_seconds=[5, 4]",
         "datasets.kinetics.demo.raw_seconds: must be [low, high] with 0 < low <= high"),
        ("datasets.kinetics.demo.clip_seconds=9",
         "datasets.kinetics.demo.clip_seconds: must be positive and not exceed the shortest raw video"),
        ("datasets.kinetics.demo.sead=1", "datasets.kinetics.demo.sead: unknown key; allowed: seed, "),
        ("datasets.kinetics.manifests=[]", "datasets.kinetics.manifests: List should have at least 1 item"),
        ("datasets.kinetcs={}", "datasets: unknown dataset 'kinetcs'; datasets: kinetics, epic"),
        ("datasets.epic.heads=both", "datasets.epic.heads: Input should be 'joint' or 'separate'"),
        ("datasets.epic.source=ftp://x", "datasets.epic.source: must be a directory, a file:// or http(s):// URL"),
        ("launch.resources.nodes=2", "launch: resources.nodes = 2 needs cluster slurm or auto (local runs on one node)"),
        ("family.slow.arhc=slow", "family.slow.arhc: unknown model key; allowed: arch, depth, frames"),
        ("family.Slow={arch: slow}", "family.Slow: a member's name is lower-case letters, digits and _"),
        ("family.model={arch: slow}", "family.model: a member's name is lower-case letters, digits and _ (not 'model'"),
        ("family.slow.arch=resnet", "family.slow.arch: Input should be 'slow', 'fast', 'slowfast'"),
        ("family.avslowfast.frames=8", "dataset.spec_frames: 128 log-mel frames, but the model's audio input is "
                                       "model.frames x alpha_a = 8 x 32"),
        ("family.slowfast.stride=10", "family.slowfast.stride: 10 is not a multiple of the Fast pathway's alpha"),
        ("train.batch_size=7", "train.batch_size: 7 does not split evenly over 2 ranks"),
        ("dataset.temporal_sampling=linspace",
         "dataset.temporal_sampling: Input should be 'auto', 'strided' or 'pyslowfast' (got 'linspace')"),
        ("spectrogram.mel_norm=htk", "spectrogram.mel_norm: Input should be 'slaney' (got 'htk')"),
        ("spectrogram.fixed_stats=[-7.03, 0]", "spectrogram.fixed_stats: must be [mean, std] with std > 0"),
        ("spectrogram.fixed_stats=[1]", "spectrogram.fixed_stats.1: Field required"),
        ("train.drop_last=sometimes", "train.drop_last: Input should be a valid boolean"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    overrides = [override, "launch.resources.tasks_per_node=2"] if override == "train.batch_size=7" else [override]
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", overrides)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_a_family_member_is_the_model_with_its_changes_and_its_own_outputs():
    params = load_params(REPO / "params.yaml", ["family={fast2: {arch: slowfast, beta_f: 0.25}}",
                                                "finetune.members=[]", "ssl=null"])
    run = kinetics_run(params, "fast2")
    member = run.params
    assert (member.model.arch, member.model.beta_f, member.model.frames) == ("slowfast", 0.25, params.model.frames)
    assert run.stage == "train@fast2" and run.dataset.name == "kinetics"
    assert run.paths.out_dir == Path("data/kinetics/train/fast2")
    assert run.paths.live_dir == Path("reports/kinetics/train/fast2")
    assert run.paths.summary == Path("reports/kinetics/train/fast2/summary.json")
    assert run.paths.ledger == Path("data/kinetics/train/fast2/ledger.csv")
    assert member.launch.log_dir == f"{params.launch.log_dir}/kinetics/fast2"  # its jobs re-attach to its runs only
    assert run.key("model.beta_f") == "family.fast2.beta_f" and run.key("model.frames") == "model.frames"
    with pytest.raises(ParamsError, match="family: no member 'fast'; members: fast2"):
        kinetics_run(params, "fast")


def test_a_plain_run_may_switch_sync_off_and_a_pretext_that_needs_it_names_the_key():
    params = load_params(REPO / "params.yaml", ["train.sync_weight=0", "ssl.train.sync_weight=1.0"])
    assert kinetics_run(params, "avslowfast").params.train.sync_weight == 0.0
    assert pretrain_run(params, "avs").params.train.sync_weight == 1.0
    with pytest.raises(ParamsError, match=re.escape("train.sync_weight: 0 switches AV-sync off, but "
                                                    "ssl.settings.avs pretrains on avs: set ssl.train.sync_weight")):
        load_params(REPO / "params.yaml", ["train.sync_weight=0"])


def test_overrides_set_nested_values_parsed_as_yaml():
    params = load_params(REPO / "params.yaml", ["download.workers=5", "launch.stage_resources.download.mem_gb=2.5",
                                                "datasets.kinetics.demo.sizes=[[64, 48]]"])
    assert params.download.workers == 5
    assert params.launch.resources_for("download").mem_gb == 2.5
    assert params.launch.resources_for("demo").mem_gb == params.launch.resources.mem_gb
    assert params.datasets["kinetics"].demo["sizes"] == [[64, 48]]


def test_missing_file_and_malformed_override_are_params_errors(tmp_path):
    with pytest.raises(ParamsError, match=r"params file not found: .*nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        load_params(REPO / "params.yaml", ["download.workers"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("download: [unclosed\n")
    with pytest.raises(ParamsError, match=r"not valid YAML \(line"):
        load_params(broken)


def _files_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.mark.parametrize(
    "args, names",
    [
        (["--set", "demo.shardz=2"], "demo.shardz: unknown key"),
        (["--set", "demo.shards=abc"], "demo.shards: Input should be a valid integer"),
        (["--set", "datasets.kinetics.demo.no_audio_fraction=1.5"],
         "datasets.kinetics.demo.no_audio_fraction: must be in [0, 1]"),
        (["--params", "missing.yaml"], "params file not found: missing.yaml"),
        (["--set", "demo.shards"], "expected KEY=VALUE"),
    ],
    ids=["wrong-key", "wrong-type", "out-of-range", "missing-file", "malformed-set"],
)
def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, args, names):
    """In this process (the params errors need no interpreter of their own; stages run as
    scripts below and in each stage's tests)."""
    write_params(tmp_path / "params.yaml")
    before = _files_under(tmp_path)
    result = invoke_stage("demo", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0]
    assert _files_under(tmp_path) == before


def test_a_selection_params_yaml_lacks_exits_2_from_the_script_with_one_line_and_writes_nothing(tmp_path):
    write_params(tmp_path / "params.yaml")
    before = _files_under(tmp_path)
    result = run_stage("demo", "--dataset", "kinetcs", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "datasets: no dataset 'kinetcs'; datasets: kinetics, epic" in lines[0]
    assert _files_under(tmp_path) == before


STAGE_ARGS = {"probe": ["--backbone", "random"], "summary": ["--report", "kinetics"]}  # required options
UNKNOWN_KEY_ERROR = ("error: params.yaml: launch.clustr: unknown key; allowed: cluster, log_dir, resources, slurm, "
                     "stage_resources, stage_slurm, cpu_isa")


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_documents_itself_and_rejects_unknown_keys(tmp_path, monkeypatch, stage):
    from click.testing import CliRunner

    write_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    main = stage_main(stage)
    help_text = CliRunner().invoke(main, ["--help"])
    assert help_text.exit_code == 0
    assert "--params" in help_text.output and "--set" in help_text.output
    bad = CliRunner().invoke(main, [*STAGE_ARGS.get(stage, []), "--set", "launch.clustr=local"])
    assert bad.exit_code == 2
    assert bad.output.strip() == UNKNOWN_KEY_ERROR
    assert _files_under(tmp_path) == {"params.yaml"}


def test_a_stage_script_exits_2_on_an_unknown_key_and_writes_nothing(tmp_path):
    write_params(tmp_path / "params.yaml")
    bad = run_stage("train", "--set", "launch.clustr=local", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == UNKNOWN_KEY_ERROR
    assert _files_under(tmp_path) == {"params.yaml"}


def test_a_fine_tuning_run_has_its_dataset_s_changes_its_own_outputs_and_starts_from_the_kinetics_run():
    params = load_params(REPO / "params.yaml")
    run = finetune_run(params, "epic", "avslowfast")
    member = run.params
    assert run.stage == "finetune@epic-avslowfast" and run.dataset.name == "epic" and run.replace_head
    assert (run.paths.out_dir, run.paths.live_dir) == (Path("data/epic/train/avslowfast"),
                                                       Path("reports/epic/train/avslowfast"))
    assert member.train.init_checkpoint == str(kinetics_run(params, "avslowfast").paths.out_dir / "final.pyth")
    assert member.model.arch == "avslowfast" and member.train.freeze_bn and member.train.lr_policy == "steps"
    assert (run.train_split, run.val_split, run.dataset.stats_split) == ("train", "validation", "train")
    assert (member.dataset.test_clips, member.dataset.test_crops) == (1, 1)  # one centre crop (A.5)
    assert run.key("train.epochs") == "datasets.epic.train.epochs" and run.key("train.seed") == "train.seed"
    charades = finetune_run(params, "charades", "slowfast")
    assert charades.params.model.dropout == 0.7 and charades.dataset.test_split == "test"
    # the dataset's changes win over the member's
    wins = load_params(REPO / "params.yaml", ["datasets.epic.model.sync=false"])
    assert finetune_run(wins, "epic", "avslowfast").params.model.sync is False
    with pytest.raises(ParamsError, match="family: no member 'audi'"):
        finetune_run(params, "epic", "audi")


def test_each_dataset_s_outputs_have_one_place():
    layout = Layout.of(load_params(REPO / "params.yaml", ["layout.data=/big/data"]).layout)
    assert layout.clips("epic") == Path("/big/data/epic/clips")
    assert layout.frames("ava") == Path("/big/data/ava/store/frames")
    assert layout.ledger("charades", "decode") == Path("/big/data/charades/ledger/decode.csv")
    assert layout.metrics("epic", "download") == Path("reports/epic/metrics/download.json")
    assert layout.model("ssl", "avs") == Path("reports/ssl/models/avs")
    assert layout.demo("ucf101") == Path("/big/data/demo/ucf101")


@pytest.mark.parametrize("override, message", [
    ("finetune.members=[slow4]", "finetune.members: 'slow4' is not a family member"),
    ("finetune.datasets=[ucf101]", "finetune.datasets: nothing is fine-tuned on 'ucf101'"),
    ("datasets.epic.train.epochz=3", "datasets.epic.train.epochz: unknown train key"),
    ("datasets.epic.model.arch=slow", "datasets.epic.model.arch: the architecture is the member's"),
    ("datasets.charades.train.lr_policy=linear", "datasets.charades.train.lr_policy: Input should be 'cosine' or"),
    ("datasets.epic.init_checkpoints={audio: x.pyth}", "datasets.epic.init_checkpoints.audio: not one of finetune"),
    ("datasets.ava.demo.movie_start_s=900", "datasets.ava.demo.movie_start_s: the demo's file offset is "
                                            "datasets.ava.movie_start_s"),
    ("datasets.ava.model.head=classification", "datasets.ava.model.head: ava trains the ava head, not 'classification'"),
    ("ssl.probe.datasets=[epic]", "ssl.probe.datasets: epic is not a probed dataset"),
])
def test_a_wrong_fine_tuning_setting_names_its_key(override, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(REPO / "params.yaml", [override])
