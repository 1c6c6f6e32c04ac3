"""params.yaml validation: typed sections, one-line errors naming the key, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import re

import pytest
import yaml

from conftest import REPO, run_stage, write_params
from pipeline.params import Params, ParamsError, load_params

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
        ("download.wrkers=4", "download.wrkers: unknown key; allowed: manifests, source"),
        ("bogus.x=1", "bogus: unknown key; allowed: launch, demo, download"),
        ("download.workers=many", "download.workers: Input should be a valid integer"),
        ("download.workers=0", "download.workers: Input should be greater than 0 (got 0)"),
        ("download.crf=60", "download.crf: Input should be less than or equal to 51 (got 60)"),
        ("launch.cluster=k8s", "launch.cluster: Input should be 'local', 'slurm', 'debug' or 'auto' (got 'k8s')"),
        ("launch.stage_resources.train.gpus=8", "launch.stage_resources.train.gpus: unknown key; allowed: timeout_min,"),
        ("demo.raw_seconds=[5, 4]", "demo.raw_seconds: must be [low, high] with 0 < low <= high"),
        ("demo.clip_seconds=9", "demo.clip_seconds: must not exceed the shortest raw video"),
        ("launch.resources.nodes=2", "launch: resources.nodes = 2 needs cluster slurm or auto (local runs on one node)"),
        ("family.slow.arhc=slow", "family.slow.arhc: unknown model key; allowed: arch, depth, frames"),
        ("family.Slow={arch: slow}", "family.Slow: a member's name is lower-case letters, digits and _"),
        ("family.slow.arch=resnet", "family.slow: model.arch: Input should be 'slow', 'fast', 'slowfast'"),
        ("train.metrics=out/t.json", "train.metrics: with a family, dvc.yaml's train@<member> stages declare "
                                     "reports/metrics/train_<member>.json"),
        ("family.avslowfast.frames=8", "family.avslowfast: dataset.spec_frames: 128 log-mel frames, but the model's"),
        ("dataset.temporal_sampling=linspace",
         "dataset.temporal_sampling: Input should be 'auto', 'strided' or 'pyslowfast' (got 'linspace')"),
        ("spectrogram.mel_norm=htk", "spectrogram.mel_norm: Input should be 'slaney' (got 'htk')"),
        ("spectrogram.fixed_stats=[-7.03, 0]", "spectrogram.fixed_stats: must be [mean, std] with std > 0"),
        ("spectrogram.fixed_stats=[1]", "spectrogram.fixed_stats.1: Field required"),
        ("train.drop_last=sometimes", "train.drop_last: Input should be a valid boolean"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", [override])
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_a_family_member_is_the_model_with_its_changes_and_its_own_outputs():
    params = load_params(REPO / "params.yaml", ["family={fast2: {arch: slowfast, beta_f: 0.25}}", "epic=null",
                                                "charades=null", "ava=null", "ssl=null"])
    member = params.variant("fast2")
    assert (member.model.arch, member.model.beta_f, member.model.frames) == ("slowfast", 0.25, params.model.frames)
    assert member.train.out_dir == f"{params.train.out_dir}/fast2"
    assert member.train.live_dir == f"{params.train.live_dir}/fast2"
    assert member.train.metrics == "reports/metrics/train_fast2.json"
    assert member.train.ledger == "data/ledger/train_fast2.csv"
    assert member.evaluate.out_dir == f"{params.evaluate.out_dir}/models/fast2"
    assert member.launch.log_dir == f"{params.launch.log_dir}/fast2"  # its jobs re-attach to its own runs only
    assert member.family == {} and params.family  # the member's params are one model's
    with pytest.raises(ParamsError, match="family: no member 'fast'; members: fast2"):
        params.variant("fast")


def test_overrides_set_nested_values_parsed_as_yaml():
    params = load_params(REPO / "params.yaml", ["download.workers=5", "launch.stage_resources.download.mem_gb=2.5",
                                                "demo.sizes=[[64, 48]]"])
    assert params.download.workers == 5
    assert params.launch.resources_for("download").mem_gb == 2.5
    assert params.launch.resources_for("demo").mem_gb == params.launch.resources.mem_gb
    assert params.demo.sizes == [(64, 48)]


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
        (["--set", "demo.seed=abc"], "demo.seed: Input should be a valid integer"),
        (["--set", "demo.no_audio_fraction=1.5"], "demo.no_audio_fraction: Input should be less than or equal to 1"),
        (["--params", "missing.yaml"], "params file not found: missing.yaml"),
        (["--set", "demo.seed"], "expected KEY=VALUE"),
    ],
    ids=["wrong-key", "wrong-type", "out-of-range", "missing-file", "malformed-set"],
)
def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, args, names):
    write_params(tmp_path / "params.yaml")
    before = _files_under(tmp_path)
    result = run_stage("demo", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0]
    assert _files_under(tmp_path) == before


def stage_main(stage: str):
    """The click command of ``stages/<stage>.py``, imported in this process (its --help and
    its params errors need no interpreter of their own; one stage runs as a script below)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{stage}", REPO / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


STAGE_ARGS = {"probe": ["--backbone", "random"]}  # a stage's required options
UNKNOWN_KEY_ERROR = ("error: params.yaml: launch.clustr: unknown key; allowed: cluster, log_dir, resources, slurm, "
                     "stage_resources, stage_slurm")


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


def test_a_fine_tuning_dataset_moves_every_output_under_its_root_and_starts_from_the_kinetics_run():
    params = load_params(REPO / "params.yaml")
    member = params.finetune("epic", "avslowfast")
    kinetics = params.variant("avslowfast")
    assert member.download.format == "epic" and member.download.source == params.epic.source
    assert member.download.manifests == [f"{params.epic.annotations}/EPIC_100_train.csv",
                                         f"{params.epic.annotations}/EPIC_100_validation.csv"]
    assert (member.download.out_dir, member.decode.out_dir, member.spectrogram.out_dir) == (
        "data/epic/clips", "data/epic/store/frames", "data/epic/store/logmel")
    assert (member.train.out_dir, member.train.metrics, member.train.live_dir, member.train.ledger) == (
        "data/epic/train/avslowfast", "reports/epic/metrics/train_avslowfast.json", "reports/epic/train/avslowfast",
        "data/epic/ledger/train_avslowfast.csv")
    assert member.evaluate.out_dir == "reports/epic/models/avslowfast" and member.evaluate.split == "validation"
    assert member.train.init_checkpoint == f"{kinetics.train.out_dir}/final.pyth"
    assert member.model.arch == "avslowfast" and member.train.freeze_bn and member.train.lr_policy == "steps"
    assert (member.train.train_split, member.train.val_split, member.spectrogram.stats_split) == (
        "train", "validation", "train")
    assert (member.dataset.test_clips, member.dataset.test_crops) == (1, 1)  # one centre crop (A.5)
    charades = params.finetune("charades", "slowfast")
    assert charades.model.dropout == 0.7 and charades.download.manifests[1].endswith("Charades_v1_test.csv")
    with pytest.raises(ParamsError, match="epic.members: no member 'audio'"):
        params.finetune("epic", "audio")


@pytest.mark.parametrize("override, message", [
    ("epic.members=[slow4]", "epic.members: 'slow4' is not a family member"),
    ("epic.train.epochz=3", "epic.train.epochz: unknown train key"),
    ("epic.model.arch=slow", "epic.model.arch: unknown model key (the architecture is the member's)"),
    ("epic.heads=both", "epic.heads: Input should be 'joint' or 'separate'"),
    ("charades.train.lr_policy=linear", "charades (member slowfast): train.lr_policy"),
    ("epic.init_checkpoints={audio: x.pyth}", "epic.init_checkpoints.audio: not one of epic.members"),
])
def test_a_wrong_fine_tuning_setting_names_its_key(override, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(REPO / "params.yaml", [override])
