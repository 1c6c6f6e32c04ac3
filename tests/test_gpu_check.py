"""scripts/gpu-check.sh --smoke: the lent GPU machine's one command, run on the CPU with tiny
models, so that it cannot rot between GPU draws. Every part runs, each figure lands in the
bench folder and, as written, in $OUT, and the comparisons read the same run's figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = ["bf16_loss_smoke.json", "gpu_loader_smoke.json", "peer_step_smoke.json", "train_stage_smoke.json",
           "train_step_smoke.json"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pytorchvideo") is None,
                                reason="the peer needs pytorchvideo (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("gpu-check")
    bench, out, absent = root / "bench", root / "out", root / "absent"
    bench.mkdir()
    # As on the GPU machine, which has no DVC: stage train runs without its curves
    (absent / "dvclive").mkdir(parents=True)
    (absent / "dvclive" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'dvclive'\")\n")
    env = {**os.environ, "AVSF_BENCH_DIR": str(bench), "OUT": str(out), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(absent), os.environ.get("PYTHONPATH", str(REPO))])}
    env.pop("BENCH_ARGS", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--smoke"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return bench, out, done.stdout


def figure(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_every_part_runs_within_its_limit_and_each_figure_is_also_in_out(smoke):
    bench, out, log = smoke
    assert sorted(p.name for p in bench.iterdir()) == FIGURES
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "gpu-check.log"])
    for name in FIGURES:
        assert (out / name).read_text() == (bench / name).read_text()
    assert (out / "gpu-check.log").read_text() == log
    for part, limit in [("peer_step", 110), ("train_step", 130), ("gpu_loader", 45), ("train_stage", 110)]:
        assert f"== {part} (limit {limit} s)" in log and f"== {part}: exit 0 after" in log
    assert "== tests" not in log and "failed: none" in log  # the suite itself runs those tests here
    runs = {figure(bench, name)["run"] for name in FIGURES}
    assert len(runs) == 1 and None not in runs


def test_the_peer_is_pytorchvideos_model_and_ours_is_compared_with_its_best(smoke):
    bench, _, log = smoke
    peer, ours = figure(bench, "peer_step_smoke.json"), figure(bench, "train_step_smoke.json")
    assert peer["builder"] == "pytorchvideo.models.audio_visual_slowfast.create_audio_visual_slowfast"
    assert peer["pytorchvideo"] == "0.1.5" and peer["complete"] and peer["goal_met"] is None
    assert set(peer["configs"]) == set(ours["configs"]) == {"eager_fp32", "bf16_cl"}
    assert peer["value"] == max(c["clips_per_s"] for c in peer["configs"].values()) > 0
    assert "torch.Size" not in log  # the fusion's print is silenced
    # ours read the peer's figure of the same run, from the other process
    assert ours["peer_clips_per_s"] == peer["value"] and ours["peer_best_config"] == peer["best_config"]
    assert ours["peer_complete"] is True
    assert ours["value"] == pytest.approx(ours["clips_per_s"] / peer["value"], rel=1e-3)
    assert ours["goal"] == 1.4 and ours["goal_met"] is None  # a smoke run is not judged
    assert ours["mfu"] > 0 and ours["matmul_peak"]["tflops"] > 0
    assert 0 < figure(bench, "bf16_loss_smoke.json")["value"] < 0.01


def test_the_loader_and_the_stage_are_compared_with_the_same_runs_rates(smoke):
    bench, _, _ = smoke
    loader, ours = figure(bench, "gpu_loader_smoke.json"), figure(bench, "train_step_smoke.json")
    assert loader["step_clips_per_s"] == ours["clips_per_s"] and loader["goal_met"] is None
    assert loader["value"] == max(m["clips_per_s"] for m in loader["modes"].values()) > 0
    stage = figure(bench, "train_stage_smoke.json")
    assert stage["stage_clips_per_s"] > 0 and stage["synthetic_clips_per_s"] > 0
    assert stage["value"] == pytest.approx(stage["stage_clips_per_s"] / stage["synthetic_clips_per_s"], rel=1e-2)
    assert stage["epochs"] == 2 and stage["steps_per_epoch"] == 3 and stage["goal"] == 0.95
    assert "model.arch=\"avslowfast\"" in stage["overrides"] and "train.batch_size=4" in stage["overrides"]


def test_a_rerun_names_its_parts_and_an_unknown_part_is_refused(tmp_path):
    env = {**os.environ, "AVSF_BENCH_DIR": str(tmp_path), "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--smoke", "train_step", "trian_stage"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and list(tmp_path.iterdir()) == []
    assert "error: unknown part 'trian_stage'; parts: peer_step train_step gpu_loader train_stage tests" in done.stderr
