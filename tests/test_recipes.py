"""The named paper configurations (pipeline/recipes.py): each model against its paper's
multiply-adds and parameters, each optimiser, schedule and length against the values typed
here from the papers, their selection through params.yaml and a stage, and their refusal on a
store they cannot work on."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from pipeline.params import ParamsError, load_params
from pipeline.recipes import RECIPES, listing, model_cost
from pipeline.runs import finetune_run, kinetics_run, pretrain_run, probe_params, target_runs
from pipeline.store_check import StoreRecord
from pipeline.train import check_recipe_store

from conftest import REPO
from train_factory import make_store, train_params

TOLERANCE = 0.02

# The papers' own figures that no count of the network they describe reproduces; each with why
# (reports/model/flops.md has the analysis). The test checks they still miss, so that a change
# that makes one match is noticed and this list kept true.
KNOWN_GMACS_MISSES = {
    "kinetics-audio-r50": "Table A.3's 14.2 G: the Audio-only network's width is not given; 3.0 G at 32, 12.1 G at 64",
    "ava-avslowfast-r50-4x16": "Table 7 charges the audio pathway 1.4 G, Table 5 3.7 G for the same pathway",
}
# Table A.1 counts its networks its own way (AVSlowFast 4x16 R50 at 36.2 G, Table 5 at 39.8 G):
# its rows are compared as ratios to its own AVSlowFast 4x16 row.
A1_REFERENCE = ("ssl-avslowfast-r50-4x16-avs-rot", 36.2)
# Table A.1's SlowFast (ROT), 34.2 G / 33.0 M, is Table 5a's SlowFast *without* laterals (ours:
# 34.16 G / 33.07 M); the recipe keeps the laterals of every other SlowFast.
A1_WITHOUT_LATERALS = "ssl-slowfast-r50-4x16-rot"
# Parameters: Table A.1's 38.5 M for AVSlowFast is below the authors' own code's count (43.6 M,
# which the Kinetics recipe is checked against): every A.1 parameter figure is left unchecked.
PARAMS_UNCHECKED = {name for name, r in RECIPES.items() if r.runs_on == "ssl"}


@pytest.fixture(scope="module")
def costs():
    return {name: model_cost(r) for name, r in RECIPES.items()}


def test_every_recipe_model_counts_its_paper_s_multiply_adds(costs):
    checked = 0
    for name, r in RECIPES.items():
        if r.gmacs is None or name == A1_WITHOUT_LATERALS:
            continue
        ours = costs[name][0]
        if r.runs_on == "ssl":
            ratio = ours / costs[A1_REFERENCE[0]][0]
            assert ratio == pytest.approx(r.gmacs / A1_REFERENCE[1], rel=TOLERANCE), name
        elif name in KNOWN_GMACS_MISSES:
            assert abs(ours / r.gmacs - 1) > TOLERANCE, f"{name} now matches: drop it from KNOWN_GMACS_MISSES"
        else:
            assert ours == pytest.approx(r.gmacs, rel=TOLERANCE), name
            checked += 1
    assert checked == 17  # every Kinetics, EPIC, Charades and AVA model whose cost the papers print


def test_table_a1_s_slowfast_is_the_one_without_laterals():
    from avsf.models.flops import count_cost
    from avsf.models import preset

    cost = count_cost(preset("slowfast_r50_4x16", laterals=False), 256)
    assert cost.gmacs == pytest.approx(RECIPES[A1_WITHOUT_LATERALS].gmacs, rel=TOLERANCE)
    assert cost.mparams == pytest.approx(RECIPES[A1_WITHOUT_LATERALS].mparams, rel=TOLERANCE)


def test_every_recipe_model_counts_its_paper_s_parameters(costs):
    checked = [name for name, r in RECIPES.items() if r.mparams and name not in PARAMS_UNCHECKED]
    assert {"kinetics-slow-r50-4x16", "kinetics-avslowfast-r50-4x16"} <= set(checked)
    for name in checked:
        assert costs[name][1] == pytest.approx(RECIPES[name].mparams, rel=TOLERANCE), name


# The papers' values, typed here from the papers (AVSlowFast A.4-A.8, SlowFast Sec. 4-5, the AVA
# 2019 report): (LR, at batch, policy, decay points in the length's unit, warm-up, length).
KINETICS_PAPER = dict(lr=1.6, batch=1024, policy="cosine", warmup_epochs=34.0, weight_decay=1e-4, dropout=0.5)
PAPER_LENGTH_EPOCHS = {  # A.4: 256 epochs when T <= 4, 196 when T > 4; SlowFast: 16x8 for half of 196
    "kinetics-slow-r50-4x16": 256, "kinetics-slowfast-r50-4x16": 256, "kinetics-avslowfast-r50-4x16": 256,
    "kinetics-audio-r50": 256, "kinetics-slowfast-r50-8x8": 196, "kinetics-slowfast-r101-8x8": 196,
    "kinetics-avslowfast-r50-8x8": 196, "kinetics-avslowfast-r101-8x8": 196, "kinetics-slowfast-r101-16x8": 98,
    "kinetics-slowfast-r101-nl-16x8": 98, "kinetics-avslowfast-r101-nl-16x8": 98,
}
PAPER_ITERATIONS = {
    # name: (lr, batch, decay points in iterations, warm-up iterations, iterations, weight decay)
    "charades-avslowfast-r101-nl-16x8": (0.07, 8, [32000], 0, 40000, 1e-4),
    "charades-slowfast-r101-nl-16x8": (0.07, 8, [32000], 0, 40000, 1e-4),
    "ava-slowfast-r50-4x16": (0.4, 256, None, 1000, 52000, 1e-7),
    "ava-avslowfast-r50-4x16": (0.4, 256, None, 1000, 52000, 1e-7),
    "ava-slowfast-r101-nl-8x8": (0.4, 256, None, 1000, 52000, 1e-7),
    "ava-avslowfast-r101-nl-8x8": (0.4, 256, None, 1000, 52000, 1e-7),
    "ava-slowfast-r101-nl-8x8-report": (0.8, 1024, None, 1000, 12000, 1e-7),
    "ssl-avslowfast-r50-8x8-avs-rot": (1.6, 1024, [80000, 100000, 110000], 10000, 120000, 1e-4),
    "ssl-avslowfast-r50-4x16-avs-rot": (1.6, 1024, [80000, 100000, 110000], 10000, 120000, 1e-4),
    "ssl-avslowfast-r50-4x16-avs": (1.6, 1024, [80000, 100000, 110000], 10000, 120000, 1e-4),
    "ssl-slowfast-r50-4x16-rot": (1.6, 1024, [80000, 100000, 110000], 10000, 120000, 1e-4),
}


def test_every_kinetics_recipe_is_a_4_and_a_5_s_recipe():
    kinetics = {n: r for n, r in RECIPES.items() if r.runs_on == "kinetics"}
    assert set(kinetics) == set(PAPER_LENGTH_EPOCHS)
    for name, r in kinetics.items():
        t, d, m = r.train, r.sampling, r.model
        assert (t["base_lr"], t["reference_batch"], t["lr_policy"]) == (1.6, 1024, "cosine"), name
        assert t["warmup_epochs"] == KINETICS_PAPER["warmup_epochs"] and t["warmup_start_lr"] == pytest.approx(0.16)
        assert t["weight_decay"] == 1e-4 and t["momentum"] == 0.9 and m["dropout"] == 0.5, name
        assert t["epochs"] == PAPER_LENGTH_EPOCHS[name] and t["iterations"] is None, name
        assert d["train_crop"] == 224 and d["test_crop"] == d["test_scale"] == 256, name
        assert d["train_scale"] == ([256, 340] if m["depth"] == 101 else [256, 320]), name
        assert (d["test_clips"], d["test_crops"]) == (10, 3) and r.views == 30, name
        assert m["tiny"] is False and m["num_classes"] == 400, name
        assert t["sync_weight"] == (1.0 if m["arch"] == "avslowfast" else 0.0), name


@pytest.mark.parametrize("name", sorted(PAPER_ITERATIONS))
def test_iteration_recipes_equal_the_papers(name):
    lr, batch, decays, warmup, iterations, weight_decay = PAPER_ITERATIONS[name]
    t = RECIPES[name].train
    assert (t["base_lr"], t["reference_batch"], t["iterations"], t["weight_decay"]) == (lr, batch, iterations,
                                                                                        weight_decay)
    assert (t["warmup_iterations"] or 0) == warmup and t["lr_policy"] == "steps"
    if decays is not None:
        assert [round(f * iterations) for f in t["lr_steps"]] == decays
    if name.startswith("ssl-"):  # A.8: "starting from learning rate 0.001" at 1024, 1/1600 of the LR at any batch
        assert t["warmup_start_lr"] == 0.001 and t["warmup_start_absolute"] is False
        assert (t["hard_negatives_from"], t["hard_negative_fraction"]) == (0.5, 0.25)  # easy for 60k of 120k
    if name.startswith("charades-"):
        assert RECIPES[name].model["dropout"] == 0.7 and RECIPES[name].model["nonlocal_blocks"] is True
    if name.startswith("ava-"):
        assert dict(RECIPES[name].section) == {"detection_score": 0.8, "train_iou": 0.9}


def test_epic_55_recipes_train_a_verb_and_a_noun_model_as_a_5():
    params = load_params(REPO / "params.yaml", ("recipes.kinetics.avslowfast=kinetics-avslowfast-r101-8x8",
                                                "recipes.epic55.avslowfast=epic55-avslowfast-r101-8x8"))
    run = finetune_run(params, "epic55", "avslowfast")
    m, d = run.params.model, run.params.dataset
    assert (m.arch, m.depth, m.frames, m.stride, m.tiny) == ("avslowfast", 101, 8, 8, False)
    assert (d.test_clips, d.test_crops) == (1, 1)  # a single centre crop
    by_target = {r.target: r.params.train for r in target_runs(run)}
    assert {k: (t.base_lr, t.reference_batch, t.iterations) for k, t in by_target.items()} == {
        "verb": (0.01, 32, 24000), "noun": (0.0006, 32, 30000)}
    for t in by_target.values():
        assert t.freeze_bn and t.lr_policy == "steps" and t.lr_steps == pytest.approx([2 / 3, 5 / 6])
    # the EPIC-100 baseline: joint heads, steps at epochs 20 and 25 of 30, warm-up 1 epoch from 0.001
    base = RECIPES["epic-slowfast-r50-8x8"]
    assert (base.train["epochs"], base.train["lr_steps"], base.train["warmup_epochs"]) == (30, [20, 25], 1.0)
    assert base.section["heads"] == "joint" and base.train["base_lr"] == 0.01 and base.train["reference_batch"] == 32


def test_probe_recipes_equal_a_8():
    params = load_params(REPO / "params.yaml", ("recipes.probe=probe-linear",))
    probe = probe_params(params)
    assert (probe.mode, probe.iterations, probe.batch_size, probe.base_lr) == ("linear", 320000, 64, 0.01)
    for name, iterations, lr in (("ucf101", 80000, 0.005), ("hmdb51", 30000, 0.01)):
        r = RECIPES[f"probe-all-{name}"].section
        assert (r["mode"], r["datasets"], r["train"]["iterations"], r["train"]["reference_batch"],
                r["train"]["base_lr"], r["train"]["lr_policy"]) == ("all", [name], iterations, 16, lr, "cosine")


def test_a_recipe_wins_over_the_sections_but_leaves_the_user_s_choices():
    params = load_params(REPO / "params.yaml", ("recipes.kinetics.avslowfast=kinetics-avslowfast-r50-4x16",
                                                "train.batch_size=64", "train.workers=5"))
    run = kinetics_run(params, "avslowfast")
    t = run.params.train
    assert (t.base_lr, t.reference_batch, t.epochs, t.batch_size, t.workers) == (1.6, 1024, 256, 64, 5)
    assert run.params.layout == params.layout and run.params.launch.cluster == params.launch.cluster
    assert run.key("train.base_lr") == "recipe kinetics-avslowfast-r50-4x16: train.base_lr"
    assert kinetics_run(params, "slowfast").recipe is None  # only the member it names
    # the fine-tuning of that member starts from its weights: the same network, the head new
    ft = finetune_run(params, "charades", "avslowfast")
    assert (ft.params.model.tiny, ft.params.model.frames, ft.params.model.num_classes) == (False, 4,
                                                                                           params.model.num_classes)


@pytest.mark.parametrize("override, message", [
    ("recipes.kinetics.avslowfast=kinetics-slowfast-r50-4x16",
     "recipes.kinetics.avslowfast: kinetics-slowfast-r50-4x16 trains a slowfast; member avslowfast"),
    ("recipes.kinetics.avslowfast=nope", "recipes.kinetics.avslowfast: no recipe 'nope'"),
    ("recipes.charades.avslowfast=ava-avslowfast-r50-4x16",
     "ava-avslowfast-r50-4x16 is a recipe for ava, not charades"),
    ("recipes.epic55.avslowfast=epic55-avslowfast-r101-8x8",
     "starts from the weights of recipe kinetics-avslowfast-r101-8x8: set recipes.kinetics.avslowfast"),
    ("recipes.ssl.avs=ssl-avslowfast-r50-8x8-avs-rot", "setting avs is avslowfast on avs"),
    ("recipes.probe=kinetics-slow-r50-4x16", "recipes.probe: kinetics-slow-r50-4x16 is a recipe for kinetics"),
])
def test_a_recipe_that_does_not_fit_its_run_is_refused_naming_the_key(override, message):
    with pytest.raises(ParamsError, match=".*" + message.replace("(", r"\(").replace(")", r"\)")):
        load_params(REPO / "params.yaml", (override,))


def test_the_ssl_recipe_sets_a_8_s_schedule_on_its_setting():
    params = load_params(REPO / "params.yaml", ("recipes.ssl.avs_rotation=ssl-avslowfast-r50-4x16-avs-rot",))
    t = pretrain_run(params, "avs_rotation").params.train
    assert (t.iterations, t.warmup_iterations, t.objective, t.sync_weight) == (120000, 10000, "rotation", 1.0)
    # 120k iterations of 1024 clips on a 240k-clip Kinetics: 512 epochs, the warm-up 42.7 of them
    resolved = t.length(240000)
    assert resolved.epochs == 512 and resolved.warmup_epochs == pytest.approx(10000 * 1024 / 240000)


def test_a_recipe_is_refused_on_a_store_it_cannot_work_on(tmp_path):
    params = load_params(REPO / "params.yaml", ("recipes.kinetics.avslowfast=kinetics-avslowfast-r50-4x16",))
    run = kinetics_run(params, "avslowfast")
    with pytest.raises(ParamsError, match=r"short side of \(256, 320\) for 224-pixel crops.*decoded at 64"):
        check_recipe_store(run, StoreRecord({"short_side": 64}))
    check_recipe_store(run, StoreRecord({"short_side": 256}))  # fits


def test_the_train_stage_refuses_a_recipe_on_the_tiny_store_with_exit_2(tmp_path):
    make_store(tmp_path)
    train_params(tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "--recipe", "kinetics-slowfast-r50-4x16"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "recipe kinetics-slowfast-r50-4x16 is for 400 classes" in done.stderr and "has 2" in done.stderr
    assert not (tmp_path / "data/kinetics/train").exists()


def test_a_length_in_iterations_becomes_epochs_of_the_store_and_the_first_line_says_so(tmp_path):
    """6 iterations of 4 clips on 12 training clips: 2 epochs of 3 steps; the stage's first
    line gives the batch, the scaled LR, the warm-up and the length in both units."""
    make_store(tmp_path)
    train_params(tmp_path, {"launch.cluster": "debug", "train.iterations": 6, "train.warmup_iterations": 3,
                            "train.epochs": 9, "train.batch_size": 4, "train.reference_batch": 2,
                            "train.base_lr": 0.05})
    done = subprocess.run([sys.executable, str(REPO / "stages/train.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "reports/kinetics/train/model/summary.json").read_text())
    # 6 iterations at reference_batch 2 = 12 clips = 1 epoch of the 12-clip split at batch 4 (3 steps)
    assert (summary["epochs"], summary["steps"]) == (1, 3)
    line = next(x for x in done.stderr.splitlines() if "params (no recipe)" in x)
    assert "global batch 4 (4 per rank x 1), lr 0.1 (0.05 at 2, scaled x2)" in line
    assert "warm-up 0.5 epochs" in line and "6 iterations at 2 (the recipe's unit) = 1 epochs of 12 clips" in line


def test_the_listing_names_every_recipe_with_its_paper_figure():
    text = listing(with_costs=False)
    for name, r in RECIPES.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        for result in r.results:
            assert f"{result.metric} {result.value}" in row
    assert "| kinetics-avslowfast-r50-4x16 | kinetics | AVSlowFast 4x16 R50 | top-1 77.0" in text
    done = subprocess.run([sys.executable, "-m", "pipeline.recipes", "epic55-avslowfast-r101-8x8"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "noun_base_lr: 0.0006" in done.stdout and "# paper: noun top-1 31.7" in done.stdout
    assert subprocess.run([sys.executable, "-m", "pipeline.recipes", "nope"], cwd=REPO, capture_output=True,
                          timeout=60).returncode == 2
    assert math.isclose(RECIPES["kinetics-avslowfast-r101-8x8"].model["beta_a"], 1.0)


def test_a_summary_prints_the_paper_beside_ours_for_a_recipe_run_on_the_real_dataset(tmp_path):
    from pipeline.summary import against_the_paper

    overrides = ("recipes.kinetics.avslowfast=kinetics-avslowfast-r50-4x16",
                 f"datasets.kinetics.annotations={tmp_path / 'kinetics-400'}")
    params = load_params(REPO / "params.yaml", overrides)
    metrics = tmp_path / "reports/kinetics/models/avslowfast/metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"official": {"top1": 0.7654}}))
    text = against_the_paper(params, "kinetics", root=tmp_path)
    assert "| avslowfast | kinetics-avslowfast-r50-4x16 | top-1 | 77.0 | 76.5 | AVSlowFast Table 3" in text
    assert "| slowfast |" not in text  # no recipe, no comparison
    on_demo = load_params(REPO / "params.yaml", (overrides[0], f"datasets.kinetics.annotations={tmp_path}/data/demo/k"))
    assert against_the_paper(on_demo, "kinetics", root=tmp_path) == ""  # the demo world is not Kinetics


def test_the_code_that_trains_is_in_the_run_s_fingerprint_and_in_dvc_yaml_s_deps(tmp_path, monkeypatch):
    import yaml

    import pipeline.train as train
    from avsf.io.digest import tree_digest
    from pipeline.train import TRAIN_CODE

    run = kinetics_run(load_params(REPO / "params.yaml"), "slowfast")
    before = train.run_fingerprint(run, "store")
    monkeypatch.setattr(train, "tree_digest", lambda *a, **k: "other code")
    assert train.run_fingerprint(run, "store") != before
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        tree_digest(("no/such/dir",), REPO)

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("train", "finetune", "pretrain"):
        deps = stages[stage].get("do", stages[stage])["deps"]
        assert set(TRAIN_CODE) <= set(deps), stage
    (tmp_path / "avsf/models").mkdir(parents=True)
    (tmp_path / "avsf/models/a.py").write_text("x = 1\n")
    before = tree_digest(("avsf/models",), tmp_path)
    (tmp_path / "avsf/models/a.py").write_text("x = 2\n")
    changed = tree_digest(("avsf/models",), tmp_path)
    assert changed != before
    (tmp_path / "avsf/models/b.txt").write_text("not code")
    assert tree_digest(("avsf/models",), tmp_path) == changed


@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r.runs_on != "probe"))
def test_every_recipe_loads_with_the_recipes_it_starts_from_and_builds_its_network(name):
    """Each recipe chosen in params.yaml (with its Kinetics start for a fine-tuning one) loads,
    and the run it makes builds the network whose cost the paper prints, whatever the model
    section says (here a different one: the recipe fixes the whole network)."""
    r = RECIPES[name]
    member = {"slow": "slow", "audio": "audio"}.get(r.arch, r.arch)
    overrides = ["model.lateral_stages=[3, 4]", "model.beta_f=0.25", "model.nonlocal_blocks=true",
                 "train.lr_gamma=0.5", "train.nesterov=true"]
    if r.runs_on == "ssl":
        setting = {("avs", "rotation"): "avs_rotation", ("avs",): "avs", ("rotation",): "rotation"}[r.pretexts]
        overrides.append(f"recipes.ssl.{setting}={name}")
    else:
        overrides.append(f"recipes.{r.runs_on}.{member}={name}")
        if r.runs_on == "kinetics":
            pass  # (a 16x8 or NL Kinetics recipe's start is an init_checkpoint: its first log line says so)
        elif r.starts_from in RECIPES:
            overrides.append(f"recipes.kinetics.{member}={r.starts_from}")
        elif r.starts_from:
            overrides.append(f"datasets.{r.runs_on}.init_checkpoints.{member}=weights.pyth")
    params = load_params(REPO / "params.yaml", tuple(overrides))
    if r.runs_on == "kinetics":
        run = kinetics_run(params, member)
    elif r.runs_on == "ssl":
        run = pretrain_run(params, setting)
    else:
        run = finetune_run(params, r.runs_on, member)
    m, t = run.params.model, run.params.train
    assert run.recipe is r
    assert all(getattr(m, k) == v for k, v in r.model.items()), name
    assert m.beta_f == 0.125 and (m.lateral_stages == [1, 2, 3, 4]) and m.nonlocal_blocks == r.model["nonlocal_blocks"]
    assert (t.lr_gamma, t.nesterov) == (0.1, False)


def test_a_warm_up_in_epochs_stays_when_the_length_is_in_iterations():
    from pipeline.params import TrainParams

    t = TrainParams(iterations=1000, reference_batch=10, warmup_epochs=2.0).length(1000)
    assert (t.epochs, t.warmup_epochs) == (10, 2.0)
    t = TrainParams(iterations=1000, reference_batch=10, warmup_iterations=300).length(1000)
    assert (t.epochs, t.warmup_epochs) == (10, 3.0)


def test_epic_s_figures_in_percent_are_not_scaled_again(tmp_path):
    from pipeline.summary import against_the_paper

    overrides = ("recipes.kinetics.avslowfast=kinetics-avslowfast-r101-8x8",
                 "recipes.epic55.avslowfast=epic55-avslowfast-r101-8x8",
                 f"datasets.epic55.annotations={tmp_path / 'epic55'}")
    params = load_params(REPO / "params.yaml", overrides)
    metrics = tmp_path / "reports/epic55/models/avslowfast/metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"verb_top1": 57.25, "noun_top1": 30.0, "action_top1": 22.5}))
    text = against_the_paper(params, "epic55", root=tmp_path)
    assert "| verb top-1 | 58.7 | 57.2 |" in text and "| noun top-1 | 31.7 | 30.0 |" in text
