"""bench/train_step.py on the CPU with the tiny model: its reports, and what it refuses.
(The peer's side and the whole GPU check: tests/test_gpu_check.py.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON_KEYS = ("metric", "value", "unit", "goal", "goal_met", "higher_is_better", "machine", "command", "date", "run")


def load_bench(name: str = "train_step"):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_our_step_alone_reports_clips_mfu_and_the_bf16_loss_but_no_ratio(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSF_BENCH_DIR", str(tmp_path))
    monkeypatch.delenv("AVSF_BENCH_RUN", raising=False)
    bench = load_bench()
    argv = ["--device", "cpu", "--tiny", "--subjects", "ours", "--steps", "1", "--warmup", "0"]
    assert bench.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16_loss_smoke.json", "train_step_smoke.json"]
    step = json.loads((tmp_path / "train_step_smoke.json").read_text())
    assert all(key in step for key in COMMON_KEYS)
    assert step["command"] == " ".join(["python", "bench/train_step.py", *argv])
    assert step["smoke"] is True and step["complete"] is True and step["goal"] == 1.4
    # no peer in this run (none ran, and no run id to find one of): no ratio, no judgement
    assert step["value"] is None and step["goal_met"] is None and step["peer_clips_per_s"] is None
    assert step["peer_complete"] is False
    assert set(step["configs"]) == {"eager_fp32", "bf16_cl"}  # compile is left out of a smoke run
    assert step["matmul_peak"]["n"] == 512 and step["matmul_peak"]["tflops"] > 0
    for config in step["configs"].values():
        expected = 2 * step["macs_per_clip"] * 3 * config["clips_per_s"] / (step["matmul_peak"]["tflops"] * 1e12)
        assert config["clips_per_s"] > 0 and config["mfu"] == pytest.approx(expected, rel=0.02, abs=1e-4)
    assert step["clips_per_s"] == max(c["clips_per_s"] for c in step["configs"].values())
    loss = json.loads((tmp_path / "bf16_loss_smoke.json").read_text())
    assert loss["higher_is_better"] is False and loss["goal"] == 0.01 and loss["goal_met"] is None
    assert loss["rel_diff"] == pytest.approx(abs(loss["bf16_loss"] - loss["fp32_loss"]) / loss["fp32_loss"], rel=1e-3)
    assert 0 < loss["rel_diff"] < 0.01  # bf16 differs, a little


def test_the_step_bench_refuses_unknown_configs_subjects_and_missing_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSF_BENCH_DIR", str(tmp_path))
    bench = load_bench()
    assert bench.main(["--device", "cpu", "--tiny", "--configs", "fp8"]) == 2
    assert bench.main(["--device", "cpu", "--tiny", "--subjects", "pyslowfast"]) == 2
    with pytest.raises(SystemExit) as exit_info:  # no timed step: no figure
        bench.main(["--device", "cpu", "--tiny", "--steps", "0"])
    assert exit_info.value.code == 2
    import torch
    if not torch.cuda.is_available():
        assert bench.main([]) == 2
        assert load_bench("train_stage").main([]) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_report_is_copied_as_written_and_read_back_only_by_its_own_run(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    import bench_report

    bench_dir, copies = tmp_path / "bench", tmp_path / "out"
    bench_dir.mkdir(), copies.mkdir()
    monkeypatch.setenv("AVSF_BENCH_DIR", str(bench_dir))
    monkeypatch.setenv("AVSF_BENCH_COPY_TO", str(copies))
    monkeypatch.setenv("AVSF_BENCH_RUN", "run-1")
    data = bench_report.report(bench_report.bench_path("x"), "loss_delta", 0.02, "ratio", 0.01, higher_is_better=False)
    assert data["goal_met"] is False and data["run"] == "run-1"
    assert (copies / "x.json").read_text() == (bench_dir / "x.json").read_text()
    assert bench_report.same_run_report("x") == data
    monkeypatch.setenv("AVSF_BENCH_RUN", "run-2")
    assert bench_report.same_run_report("x") is None
    assert bench_report.report(bench_report.bench_path("y"), "peer", 3.0, "clips/s", None)["goal_met"] is None


def test_fresh_clone_times_each_dvc_stage_from_its_line_to_the_next_and_the_last_to_the_end(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    bench = load_bench("fresh_clone")
    log = [(0.5, "+ python3 -m dvc repro"), (1.0, "Running stage 'demo@kinetics':"), (3.0, "> python stages/demo.py"),
           (4.25, "Running stage 'download@kinetics':"), (9.0, "Updating lock file 'dvc.lock'")]
    assert bench.stage_seconds(log, end=10.0) == {"demo@kinetics": 3.2, "download@kinetics": 5.8}
    assert bench.stage_seconds([], end=3.0) == {}
