"""The claims as data (pipeline/claims.py) on hand-made results: each report's lines on one
run as its summary has always stated them, the verdict over seeds, the seeds' section of every
report, summary.json's counts, and what scripts/experiments.py collects from a workspace."""

from __future__ import annotations

import json
import math

import pytest

from conftest import REPO
from pipeline.claims import Claim, OverSeeds, claims_metrics, composite, over_seeds, seeds_section
from pipeline.datasets import dataset
from pipeline.params import load_params


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def over(margins: list[float], unit: str = "") -> OverSeeds:
    """A claim 'A beats B' over seeds 0, 1, ... with B at 0.5 and A at 0.5 + margin."""
    per_seed = [(seed, [Claim("k", "A beats B", 0.5 + m, 0.5, unit)]) for seed, m in enumerate(margins)]
    return over_seeds(per_seed)[0]


# --------------------------------------------------------------------------- the verdict


def test_a_claim_holds_on_every_seed_with_a_margin_of_two_standard_errors():
    c = over([0.10, 0.12, 0.14])
    # differences 0.10, 0.12, 0.14: mean 0.12, sd 0.02, SE 0.02 / sqrt(3) = 0.01155: 10.4 SE
    assert c.verdict == "holds" and c.mean == pytest.approx(0.12)
    assert c.standard_error == pytest.approx(0.02 / math.sqrt(3)) and c.margin_se == pytest.approx(10.392, abs=1e-3)
    assert c.line() == ("- A beats B: **holds**: on 3 of 3 seeds, mean difference +0.120 ± 0.012 (10.4 standard "
                        "errors); seed 0: 0.600 vs 0.500; seed 1: 0.620 vs 0.500; seed 2: 0.640 vs 0.500")
    assert c.metrics() == {"held": 3, "seeds": 3, "margin_se": 10.39, "reproduced": 1}


def test_a_claim_that_holds_on_every_seed_within_two_standard_errors_is_not_reproduced():
    c = over([1.0, 10.0, 1.0], unit="%")
    # mean 4.0, sd 5.196, SE 3.0: 1.33 SE
    assert c.verdict == "not reproduced" and c.margin_se == pytest.approx(4 / 3)
    assert c.line("a reason").startswith(
        "- A beats B: **not reproduced**: holds on 3 of 3 seeds, but the mean difference +4.0 ± 3.0 points is 1.3 "
        "standard errors, under 2; a reason; seed 0: 1.5% vs 0.5%;")
    assert c.metrics() == {"held": 3, "seeds": 3, "margin_se": 1.33, "reproduced": 0}


def test_a_claim_that_fails_on_one_seed_is_not_reproduced_whatever_its_mean():
    c = over([0.3, 0.3, -0.01])
    assert c.verdict == "not reproduced" and c.held == (0, 1)
    assert c.line().startswith("- A beats B: **not reproduced**: holds on 2 of 3 seeds (not on seed 2), mean "
                               "difference +0.197 ± 0.103")
    nowhere = over([-0.1, -0.2])
    assert nowhere.line().startswith("- A beats B: **not reproduced**: holds on 0 of 2 seeds, mean difference")
    assert over([0.0, 0.0]).verdict == "not reproduced"  # a tie is not a win


def test_on_one_seed_the_margin_is_not_measured():
    held = over([0.2])
    assert held.verdict == "margin not measured" and held.standard_error is None and held.margin_se is None
    assert held.line() == ("- A beats B: **holds on 1 of 1 seed**, the margin not measured (one seed: no standard "
                           "error); seed 0: 0.700 vs 0.500")
    assert held.metrics() == {"held": 1, "seeds": 1, "reproduced": 0}
    failed = over([-0.2])
    assert failed.line().startswith("- A beats B: **not reproduced**: holds on 0 of 1 seed, the margin not measured")


def test_the_same_difference_on_every_seed_holds_and_leaves_no_infinite_figure_in_the_metrics():
    c = over([0.1, 0.1, 0.1])
    assert c.verdict == "holds" and c.margin_se == math.inf
    assert "mean difference +0.100 ± 0.000 (the same on every seed)" in c.line()
    assert c.metrics() == {"held": 3, "seeds": 3, "reproduced": 1}
    json.dumps(c.metrics(), allow_nan=False)
    # The same difference in % from other figures: equal but for float rounding (a real pair, EPIC's).
    rounded = over_seeds([(s, [Claim("k", "A beats B", a, b, "%")]) for s, (a, b) in
                          enumerate([(100.0, 100 * 1 / 6), (100 * 11 / 12, 100 * 1 / 12)])])[0]
    assert rounded.standard_error == 0.0 and "(the same on every seed)" in rounded.line()
    # ... and as metrics files keep them, to 4 decimals; a real difference of 0.1 point is not
    stored = over_seeds([(s, [Claim("k", "A beats B", a, b, "%")]) for s, (a, b) in
                         enumerate([(100.0, 16.67), (91.67, 8.33), (100.0, 16.57)])])
    assert stored[0].standard_error is not None and stored[0].standard_error > 0
    assert over_seeds([(s, [Claim("k", "A beats B", a, b, "%")]) for s, (a, b) in
                       enumerate([(100.0, 16.67), (91.67, 8.33)])])[0].standard_error == 0.0


def test_a_seed_missing_a_member_is_left_out_of_the_count_and_named():
    per_seed = [(0, [Claim("k", "A beats B", 0.7, 0.5)]), (1, [Claim("k", "A beats B", None, 0.5)]),
                (2, [Claim("k", "A beats B", 0.8, 0.5)])]
    c = over_seeds(per_seed)[0]
    assert (c.seeds, c.unmeasured) == ((0, 2), (1,)) and "; not measured on seed 1; seed 0:" in c.line()
    never = over_seeds([(0, [Claim("k", "A beats B")])])[0]
    assert never.verdict == "not measured" and never.line() == "- A beats B: **not measured** on any seed"


def test_a_claim_of_several_parts_holds_when_each_does_and_its_margin_is_the_weakest():
    parts = [Claim("sound", "sound", 0.9, 0.3, label="sound", versus="the best "),
             Claim("motion", "motion", 0.2, 0.5, above=False, label="motion", versus="the best ")]
    c = composite("audio", "Audio is strong on sound only", parts)
    assert c.holds is True and c.margin == pytest.approx(0.3)  # min(0.6, 0.3)
    assert c.line == ("- Audio is strong on sound only: **holds** (sound 0.900 vs the best 0.300; motion 0.200 vs the "
                      "best 0.500)")
    assert composite("audio", "x", [*parts[:1], Claim("m", "m", 0.6, 0.5, above=False)]).holds is False
    assert composite("audio", "Audio is strong on sound only", []).line == "- Audio is strong on sound only: **not measured**"


# --------------------------------------------------------------------------- each report's claims on one run


def epic_member(arch: str, sound: float, noun: float, verb: float = 40.0, action: float = 20.0) -> dict:
    return {"arch": arch, "verb_top1": verb, "noun_top1": noun, "action_top1": action, "verb_top5": 80.0,
            "noun_top5": 80.0, "action_top5": 50.0, "noun_groups": {"appearance": {"noun_top1": 60.0, "segments": 20},
                                                                     "sound": {"noun_top1": sound, "segments": 15}}}


def test_epic_claims_state_what_the_summary_always_said():
    from pipeline.datasets.epic import claims

    lines = [c.line for c in claims({"slowfast": epic_member("slowfast", 13.33, 47.37),
                                     "avslowfast": epic_member("avslowfast", 73.33, 65.79)})]
    assert lines == ["- AVSlowFast beats SlowFast on the nouns told apart by sound: **holds** (73.3% vs 13.3%)",
                     "- AVSlowFast beats SlowFast on nouns overall (the paper: +4.3 top-1 on EPIC-55): **holds** "
                     "(65.8% vs 47.4%)"]
    alone = [c.line for c in claims({"avslowfast": epic_member("avslowfast", 73.3, 65.8)})]
    assert alone[1] == "- AVSlowFast beats SlowFast on nouns overall (the paper: +4.3 top-1 on EPIC-55): **not measured**"


def test_epic55_claims_compare_the_gains_and_each_kind():
    from pipeline.datasets.epic55 import claims

    lines = [c.line for c in claims({"slowfast": epic_member("slowfast", 16.7, 29.2, verb=37.5, action=4.2),
                                     "avslowfast": epic_member("avslowfast", 58.3, 70.8, verb=33.3, action=33.3)})]
    assert lines[0] == ("- Audio helps the nouns most: AVSlowFast's noun top-1 gain over SlowFast beats its verb and "
                        "action gains (the paper: +4.3 vs +2.9 / +2.3): **holds** (41.6% vs 29.1%)")
    assert lines[1] == "- AVSlowFast beats SlowFast in verb top-1 (the paper: 55.8 -> 58.7): **does not hold** (33.3% vs 37.5%)"
    assert len(lines) == 5 and lines[4].startswith("- AVSlowFast beats SlowFast on the nouns told apart by sound: **holds**")


def test_charades_claim_is_on_the_official_map_else_the_sklearn_style_one_said_so():
    from pipeline.datasets.charades import claims

    results = {"slowfast": {"arch": "slowfast", "map_official": 0.5843, "map_sklearn": 0.558},
               "avslowfast": {"arch": "avslowfast", "map_official": 0.5836, "map_sklearn": 0.539}}
    assert [c.line for c in claims(results)] == [
        "- AVSlowFast beats SlowFast in mAP (the paper: 42.5 -> 43.7), official: **does not hold** (0.584 vs 0.584)"]
    results["slowfast"]["map_official"] = None
    assert [c.line for c in claims(results)] == [
        "- AVSlowFast beats SlowFast in mAP (the paper: 42.5 -> 43.7), sklearn-style (the official mAP is undefined "
        "here): **does not hold** (0.539 vs 0.558)"]


def ava_member(arch: str, sound: float, mean_ap: float | None) -> dict:
    return {"arch": arch, "map": mean_ap, "group_map": {"pose": 0.6, "sound": sound}}


def test_ava_claims_state_what_the_summary_always_said():
    from pipeline.datasets.ava import claims

    lines = [c.line for c in claims({"slowfast": ava_member("slowfast", 1 / 6, 0.43),
                                     "avslowfast": ava_member("avslowfast", 1 / 3, 0.516)})]
    assert lines == ["- AVSlowFast beats SlowFast on the actions defined by their sound: **holds** (33.3% vs 16.7%)",
                     "- AVSlowFast beats SlowFast in frame-mAP (the paper: 27.3 -> 28.6): **holds** (51.6% vs 43.0%)"]
    # an undefined frame-mAP counts as 0, as the summary always did
    assert claims({"slowfast": ava_member("slowfast", 0.1, None),
                   "avslowfast": ava_member("avslowfast", 0.2, 0.1)})[1].figures == "10.0% vs 0.0%"


def probe(ucf: float, hmdb: float) -> dict:
    return {"datasets": {"ucf101": {"mean_top1": ucf}, "hmdb51": {"mean_top1": hmdb}}}


SSL_RESULTS = {"random": probe(0.2, 0.2), "supervised": probe(0.8, 0.6), "rotation": probe(0.3, 0.1),
               "avs": probe(0.5, 0.3), "avs_rotation": probe(0.6, 0.4)}


def test_ssl_claims_name_the_settings_they_compare(params):
    from pipeline.ssl_summary import claims

    cs = claims(params, SSL_RESULTS)
    assert [c.key for c in cs] == ["rotation_vs_random", "avs_vs_random", "avs_rotation_vs_random",
                                   "avs_rotation_vs_rotation", "avs_rotation_vs_avs"]
    assert cs[4].about == ("avs_rotation", "avs")
    assert cs[2].line == ("- the self-supervised `avs_rotation` backbone beats random weights (mean top-1 over the "
                          "datasets): **holds** (50.0% vs 20.0%)")


# --------------------------------------------------------------------------- the seeds' section of every report


def record(runs: list[dict]) -> dict:
    return {"command": "python scripts/experiments.py", "machine": "AMD EPYC (x86_64, AVX512, 2 cores)",
            "date": "2026-12-08", "seconds": 5400.0, "runs": runs}


def seeds(results_per_seed: list[dict], **extra) -> dict:
    return record([{"kind": "seed", "seed": s, "set": [f"train.seed={s}"], "results": r, "seconds": 1.0,
                    **{k: v[s] for k, v in extra.items()}} for s, r in enumerate(results_per_seed)])


def test_without_a_record_the_section_says_how_to_measure_it(params):
    from pipeline.datasets.charades import seeds_report

    assert seeds_section(seeds_report(), None) == [
        "", "Over seeds: not measured yet (`python scripts/experiments.py --reports charades`)."]
    assert seeds_section(seeds_report(), record([])) == seeds_section(seeds_report(), None)


@pytest.mark.parametrize("name,per_seed,row,claim", [
    ("epic", [{"slowfast": epic_member("slowfast", s, 47.0), "avslowfast": epic_member("avslowfast", 70.0 + s, 60.0)}
              for s in (10.0, 20.0, 15.0)],
     "| AVSlowFast | 3 | 40.0 (40.0..40.0) | 60.0 (60.0..60.0) | 20.0 (20.0..20.0) | 60.0 (60.0..60.0) | 85.0 (80.0..90.0) |",
     "- AVSlowFast beats SlowFast on the nouns told apart by sound: **holds**: on 3 of 3 seeds, mean difference "
     "+70.0 ± 0.0 points (the same on every seed)"),
    ("epic55", [{"slowfast": epic_member("slowfast", 20.0, 40.0), "avslowfast": epic_member("avslowfast", s, 45.0)}
                for s in (30.0, 10.0, 25.0)],
     "| SlowFast | 3 | 40.0 (40.0..40.0) | 40.0 (40.0..40.0) | 20.0 (20.0..20.0) | 60.0 (60.0..60.0) | 20.0 (20.0..20.0) |",
     "- AVSlowFast beats SlowFast on the nouns told apart by sound: **not reproduced**: holds on 2 of 3 seeds (not on "
     "seed 1), mean difference +1.7 ± 6.0 points (0.3 standard errors)"),
    ("charades", [{"slowfast": {"arch": "slowfast", "map_official": 0.5, "map_sklearn": 0.5},
                   "avslowfast": {"arch": "avslowfast", "map_official": m, "map_sklearn": 0.6}} for m in (0.6, 0.52, 0.55)],
     "| AVSlowFast | 3 | 55.7 (52.0..60.0) | 60.0 (60.0..60.0) |",
     "- AVSlowFast beats SlowFast in mAP (the paper: 42.5 -> 43.7), official: **holds**: on 3 of 3 seeds, mean "
     "difference +0.057 ± 0.023 (2.4 standard errors)"),
    ("ava", [{"slowfast": ava_member("slowfast", 0.25, 0.4), "avslowfast": ava_member("avslowfast", s, 0.45)}
             for s in (0.257, 0.30, 0.26)],
     "| AVSlowFast | 3 | 45.0 (45.0..45.0) | 60.0 (60.0..60.0) | 27.2 (25.7..30.0) |",
     "- AVSlowFast beats SlowFast on the actions defined by their sound: **not reproduced**: holds on 3 of 3 seeds, "
     "but the mean difference +2.2 ± 1.4 points is 1.6 standard errors, under 2"),
])
def test_every_report_renders_its_members_over_seeds_and_each_claims_verdict(name, per_seed, row, claim):
    module = __import__(f"pipeline.datasets.{name}", fromlist=["seeds_report"])
    report = module.seeds_report() if name == "charades" else module.seeds_report(per_seed[0])
    lines = seeds_section(report, seeds(per_seed))
    assert lines[:5] == ["", "## Over seeds", "", "`python scripts/experiments.py` on AMD EPYC (x86_64, AVX512, 2 cores), "
                         "2026-12-08: 90 minutes. Mean (min..max) over the seeds.", ""]
    assert row in lines
    assert any(line.startswith(claim) for line in lines), lines
    # summary.json's counts of the same claims
    metrics = claims_metrics(report, seeds(per_seed), 0, per_seed[0])
    key = "sound" if name == "ava" else "map" if name == "charades" else "sound_nouns"
    held = sum(bool(c.holds) for r in per_seed for c in report.claims(r) if c.key == key)
    assert (metrics[key]["held"], metrics[key]["seeds"]) == (held, 3)
    json.dumps(metrics, allow_nan=False)


def test_the_kinetics_summary_json_counts_its_claims_over_seeds_or_on_this_run(params):
    from test_kinetics_summary import family

    ds = dataset(params, "kinetics")
    _, alone = ds.summary(family(), None, params)
    assert alone["claims"] == {"slowfast_motion": {"held": 1, "seeds": 1, "reproduced": 0},
                               "avslowfast_sound": {"held": 1, "seeds": 1, "reproduced": 0},
                               "audio_only_sound": {"held": 1, "seeds": 1, "reproduced": 0}}
    assert alone["avslowfast"]["top1"] == 0.8  # the members' figures stay as they were
    text, metrics = ds.summary(family(), seeds([family(sound_av=v) for v in (0.8, 0.4, 0.6)]), params)
    assert metrics["claims"]["avslowfast_sound"] == {"held": 2, "seeds": 3, "margin_se": 0.87, "reproduced": 0}
    assert "- AVSlowFast beats SlowFast on the sound classes: **not reproduced**: holds on 2 of 3 seeds (not on seed 1)" in text


def test_the_ssl_section_shows_each_pretexts_own_accuracy_beside_chance_where_a_claim_is_not_reproduced(params):
    from pipeline.ssl_summary import pretexts_over_seeds, seeds_report

    def pretexts(rotation: float) -> dict:
        return {"rotation": {"pretexts": ["rotation"], "final": {"rotation_top1": rotation}, "sync_loss": 0.0,
                             "chance": {"rotation_top1": 0.25}},
                "avs": {"pretexts": ["avs"], "final": {"loss": 0.0}, "sync_loss": 0.56, "chance": {}},
                "avs_rotation": {"pretexts": ["avs", "rotation"], "final": {"rotation_top1": 0.26}, "sync_loss": 0.5,
                                 "chance": {"rotation_top1": 0.25}}}

    experiments = seeds([SSL_RESULTS] * 3, pretexts=[pretexts(r) for r in (0.32, 0.28, 0.26)])
    lines = seeds_section(seeds_report(params), experiments)
    assert "| ROT (`rotation`) | 3 | 30.0 (30.0..30.0) | 10.0 (10.0..10.0) | 20.0 (20.0..20.0) |" in lines
    rotation = next(line for line in lines if line.startswith("- the self-supervised `rotation` backbone"))
    assert rotation == ("- the self-supervised `rotation` backbone beats random weights (mean top-1 over the datasets): "
                        "**not reproduced**: holds on 0 of 3 seeds, mean difference +0.0 ± 0.0 points (the same on "
                        "every seed); `rotation`'s own rotation pretext reached 32%, 28%, 26% val accuracy on seeds "
                        "0, 1, 2 (chance 25%); seed 0: 20.0% vs 20.0%; seed 1: 20.0% vs 20.0%; seed 2: 20.0% vs 20.0%")
    avs = next(line for line in lines if line.startswith("- the self-supervised `avs` backbone"))
    assert avs.startswith("- the self-supervised `avs` backbone beats random weights (mean top-1 over the datasets): "
                          "**holds**") and "pretext" not in avs  # a claim that holds needs no reason
    table = pretexts_over_seeds(experiments)
    assert "| ROT (`rotation`) | 3 | 28.7 (26.0..32.0) [25.0] | - |" in table
    assert "| AVS (`avs`) | 3 | - | 0.560 (0.560..0.560) |" in table


# --------------------------------------------------------------------------- what the experiments script collects


def test_collect_reads_each_reports_results_and_each_pretexts_own_figures_from_a_workspace(params, tmp_path):
    from pipeline.experiments import collect, report_names
    from pipeline.layout import METRICS_NAME, SSL, Layout
    from pipeline.runs import PROBE_REFERENCES

    layout = Layout.of(params.layout)
    assert report_names(params) == ["kinetics", "epic", "epic55", "charades", "ava", "ssl"]

    def write(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))

    for member in params.finetune.members:
        write(tmp_path / layout.model("ava", member) / METRICS_NAME, ava_member(member, 0.3, 0.4) | {"arch": "x"})
    entry = collect(params, "ava", tmp_path)
    assert set(entry) == {"results"} and entry["results"]["avslowfast"]["arch"] == "avslowfast"  # the member's arch
    assert entry["results"]["slowfast"]["group_map"]["sound"] == 0.3

    for backbone in (*PROBE_REFERENCES, *params.ssl.settings):
        write(tmp_path / layout.model(SSL, backbone) / METRICS_NAME, probe(0.5, 0.4))
    with pytest.raises(Exception, match="run stage pretrain@rotation first"):
        collect(params, SSL, tmp_path)
    for setting, section in params.ssl.settings.items():
        final = {"loss": 1.3, "videos": 200.0, **({"rotation_top1": 0.29} if "rotation" in section.pretexts else {})}
        write(tmp_path / layout.run(SSL, setting).summary, {"final": final, "last_epoch": {"sync_loss": 0.56}})
    entry = collect(params, SSL, tmp_path)
    assert set(entry["results"]) == {*PROBE_REFERENCES, *params.ssl.settings}
    assert entry["pretexts"]["rotation"] == {"pretexts": ["rotation"], "final": {"loss": 1.3, "videos": 200.0,
                                                                                 "rotation_top1": 0.29},
                                             "sync_loss": 0.56, "chance": {"rotation_top1": 0.25}}
    assert entry["pretexts"]["avs"]["chance"] == {} and entry["pretexts"]["avs"]["sync_loss"] == 0.56


def test_every_ablation_the_experiments_script_runs_gives_params_that_load(params, tmp_path, monkeypatch):
    """Each ablation's `dvc exp run -S` values, applied as DVC applies them, give a params.yaml
    the stages accept (AV-sync off once stopped the script: the AVS pretrainings need it)."""
    import importlib.util
    import shutil

    from dvc.utils.hydra import apply_overrides

    monkeypatch.setattr("sys.argv", ["experiments.py"])
    spec = importlib.util.spec_from_file_location("experiments_script", REPO / "scripts" / "experiments.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for label, changes in script.ABLATIONS:
        path = tmp_path / "params.yaml"
        shutil.copy(REPO / "params.yaml", path)
        apply_overrides(path, ["train.seed=1", *script.ablation_sets(params, changes)])
        ablated = load_params(path)
        assert all(ablated.family[script.AV][k] == v for k, v in changes.items()), label
    sync_off = script.ablation_sets(params, {"sync": False})
    assert sorted(sync_off[1:]) == ["~ssl.settings.avs", "~ssl.settings.avs_rotation"]
