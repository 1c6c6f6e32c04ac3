"""bench/train_step.py runs end to end on CPU with the tiny model and writes a smoke report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_bench(name: str = "train_step"):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_step_bench_smoke_on_cpu(tmp_path):
    bench = load_bench()
    out = tmp_path / "smoke.json"
    argv = ["--device", "cpu", "--tiny", "--configs", "eager_fp32,bf16_cl", "--steps", "2",
            "--warmup", "1", "--out", str(out)]
    code = bench.main(argv)
    assert code == 0
    report = json.loads(out.read_text())
    assert report["command"] == " ".join(["python", "bench/train_step.py", *argv])
    for key in ("metric", "value", "unit", "goal", "higher_is_better", "machine", "command", "date"):
        assert key in report
    assert report["smoke"] is True and report["goal_met"] is None and report["metric"].endswith("_smoke")
    assert report["device"] == "cpu" and report["goal"] == 300.0
    assert set(report["configs"]) == {"eager_fp32", "bf16_cl"}
    assert all(c["clips_per_s"] > 0 and c["mfu"] >= 0 for c in report["configs"].values())
    assert report["bf16_vs_fp32"]["agree"] and report["bf16_vs_fp32"]["rel_diff"] < 0.02
    assert report["value"] == max(c["clips_per_s"] for c in report["configs"].values())


def test_train_step_bench_refuses_unknown_configs_and_missing_cuda():
    bench = load_bench()
    assert bench.main(["--device", "cpu", "--tiny", "--configs", "fp8"]) == 2
    with pytest.raises(SystemExit) as exit_info:  # no timed step: no figure
        bench.main(["--device", "cpu", "--tiny", "--steps", "0"])
    assert exit_info.value.code == 2
    import torch
    if not torch.cuda.is_available():
        assert bench.main([]) == 2


def test_train_loop_bench_compares_the_loop_with_synthetic_batches(tmp_path):
    bench = load_bench("train_loop")
    out = tmp_path / "loop.json"
    report = bench.main(["--device", "cpu", "--tiny", "--batch", "2", "--steps", "3", "--warmup", "1",
                         "--workers", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["metric"] == "train_loop_over_synthetic" and report["goal"] == 0.95 and report["goal_met"] is None
    assert report["loop_clips_per_s"] > 0 and report["synthetic_clips_per_s"] > 0
    assert report["value"] == pytest.approx(report["loop_clips_per_s"] / report["synthetic_clips_per_s"], rel=1e-2)
    import torch
    if not torch.cuda.is_available():
        assert bench.main([]) is None  # the full figure needs the GPU
