"""The Kinetics summary on hand-made metrics: the claims, the table and the seeds' spread."""

from __future__ import annotations

import pytest

from conftest import REPO
from pipeline.datasets.kinetics import claims, experiments_markdown, summary_markdown
from pipeline.params import load_params

GROUPS = ("appearance", "motion", "sound", "audiovisual")


def member(arch: str, top1: float, groups: dict[str, float], videos: int = 50) -> dict:
    figures = {"videos": 4 * videos + 1, "top1": top1, "top5": 0.9, "mean_class_accuracy": top1,
               "groups": {g: {"top1": v, "videos": videos, "stderr": (v * (1 - v) / videos) ** 0.5}
                          for g, v in groups.items()}}
    return {"arch": arch, "model": f"{arch}_tiny_4x16", "split": "val", "views": "5 clips x 3 crops",
            "views_per_video": 15, "test_crop": 64, "gflops_per_view": 0.5, "params_m": 0.1, "top1": top1,
            "top5": 0.9, "official": figures, "available": {**figures, "videos": 4 * videos}, "missing": 1}


def family(motion_sf: float = 0.9, sound_av: float = 0.8) -> dict:
    return {
        "slow": member("slow", 0.6, {"appearance": 0.9, "motion": 0.5, "sound": 0.5, "audiovisual": 0.6}),
        "slowfast": member("slowfast", 0.7, {"appearance": 0.9, "motion": motion_sf, "sound": 0.5, "audiovisual": 0.6}),
        "avslowfast": member("avslowfast", 0.8, {"appearance": 0.9, "motion": 0.9, "sound": sound_av, "audiovisual": 0.9}),
        "audio": member("audio", 0.4, {"appearance": 0.5, "motion": 0.3, "sound": 0.95, "audiovisual": 0.7}),
    }


def test_claims_hold_or_fail_on_the_group_figures():
    held = [c.holds for c in claims(family())]
    assert held == [True, True, True]
    assert [c.holds for c in claims(family(motion_sf=0.5, sound_av=0.5))] == [False, False, True]
    no_slow = {k: v for k, v in family().items() if k != "slow"}
    assert [c.holds for c in claims(no_slow)] == [None, True, True]
    # Audio-only on motion above Slow-only (which cannot see the flicker) but below SlowFast: holds
    chance = family()
    chance["audio"]["official"]["groups"]["motion"]["top1"] = 0.6
    assert claims(chance)[2].holds is True
    # ... and above every visual model on motion: not "strong only on sound"
    chance["audio"]["official"]["groups"]["motion"]["top1"] = 0.95
    assert claims(chance)[2].holds is False and "motion 0.950 vs the visual models' best 0.900" in claims(chance)[2].figures
    assert claims(chance)[2].line == (
        "- Audio-only is strong only on the sound classes (above the visual models there, below the best of them on "
        "appearance and motion): **does not hold** (sound 0.950 vs the visual models' best 0.500; appearance 0.500 vs "
        "the visual models' best 0.900; motion 0.950 vs the visual models' best 0.900)")
    assert claims({k: v for k, v in family().items() if k != "audio"})[2].line.endswith("motion): **not measured**")


def test_the_table_has_a_row_per_member_with_standard_errors():
    text = summary_markdown(family(), None)
    row = next(line for line in text.splitlines() if line.startswith("| AVSlowFast"))
    # 0.8 of 201 videos: ± sqrt(0.8 * 0.2 / 201) = 2.8 points; sound 0.8 of 50: ± 5.7
    assert row.startswith("| AVSlowFast (`avslowfast_tiny_4x16`) | 80.0 ± 2.8 | 90.0 ± 2.1 | 90.0 ± 4.2 | 90.0 ± 4.2 | 80.0 ± 5.7 |")
    assert row.endswith("| 0.100 | 0.500 x 15 |")
    assert "201 manifest videos; 1 without a prediction (failed download or decode), each counted as a miss" in text
    assert "- AVSlowFast beats SlowFast on the sound classes: **holds** (0.800 vs 0.500)" in text


def test_seeds_show_mean_and_spread_and_claims_per_seed():
    runs = [{"kind": "seed", "seed": s, "results": family(sound_av=v)} for s, v in ((0, 0.8), (1, 0.4), (2, 0.6))]
    runs.append({"kind": "ablation", "seed": 0, "label": "AV-sync off", "member": "avslowfast",
                 "results": {"avslowfast": family(sound_av=0.7)["avslowfast"]}})
    lines = experiments_markdown({"command": "x", "machine": "m", "date": "d", "seconds": 600, "runs": runs},
                                 list(GROUPS))
    av = next(line for line in lines if line.startswith("| AVSlowFast |"))
    assert av == "| AVSlowFast | 3 | 80.0 (80.0..80.0) | 90.0 (90.0..90.0) | 90.0 (90.0..90.0) | 60.0 (40.0..80.0) | 90.0 (90.0..90.0) |"
    sound_claim = next(line for line in lines if line.startswith("- AVSlowFast beats SlowFast"))
    assert sound_claim.startswith("- AVSlowFast beats SlowFast on the sound classes: **not reproduced**: holds on 2 of "
                                  "3 seeds (not on seed 1), mean difference +0.100 ± 0.115 (0.9 standard errors); "
                                  "seed 0: 0.800 vs 0.500; seed 1: 0.400 vs 0.500")
    assert "| AV-sync off | 1 | 80.0 |" in "\n".join(lines)
    assert experiments_markdown(None, list(GROUPS)) == [
        "", "Over seeds: not measured yet (`python scripts/experiments.py --reports kinetics`)."]


def test_a_missing_member_result_is_a_stage_error(tmp_path, monkeypatch):
    from pipeline.launch import StageFailed
    from pipeline.summary import run_summary

    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml")
    with pytest.raises(StageFailed, match="run the evaluation of slow on kinetics first"):
        run_summary(params, "kinetics")
