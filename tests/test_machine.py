"""Which machine a result came from (avsf.io.machine), and launch.cpu_isa: every job's math
libraries pinned to one instruction set, so that a machine with AVX-512 computes what one
with AVX2 only does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from _jobs import train_steps
from avsf.io.machine import CPU_ISA_PINS, cpu_level, cpu_model, joined, machine_description
from pipeline.launch import run_shards
from conftest import REPO
from pipeline.params import LaunchParams, ParamsError, load_params
from pipeline.summary import machine_line, with_line

AVX2_PIN = CPU_ISA_PINS["avx2"]
# A machine with AVX2 but no AVX-512, as each library would see it: torch's kernels, oneDNN's
# and MKL's capped at AVX2 (numpy, FFmpeg: the demo world came out the same bytes without
# their AVX-512 code; README "What holds across machines").
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def launch(tmp_path: Path, cpu_isa: str) -> LaunchParams:
    return LaunchParams(cluster="local", log_dir=str(tmp_path / "logs" / cpu_isa), cpu_isa=cpu_isa,
                        resources={"timeout_min": 5, "cpus_per_task": 1, "mem_gb": 2})


def test_the_description_names_the_cpu_its_instruction_sets_and_the_pin(monkeypatch):
    for name in (*AVX2_PIN, "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    described = machine_description(with_torch=True)
    assert described.startswith(f"{cpu_model()} (") and f"{os.cpu_count()} cores" in described
    assert (cpu_level() or "") in described and f"torch {torch.__version__} on the CPU" in described
    assert f"({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread" in described
    assert "pinned" not in described
    for name, value in AVX2_PIN.items():
        monkeypatch.setenv(name, value)
    assert machine_description(with_torch=True).endswith(", math pinned to avx2")
    monkeypatch.setenv("MKL_CBWR", "AVX2")  # not launch.cpu_isa's: each variable as it is set
    assert machine_description().endswith(", pinned ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2")
    assert joined(["A; B", None, "B", "C", ""]) == "A; B; C" and joined([None]) is None


def test_the_summary_line_names_what_trained_and_what_evaluated():
    same = {"m": {"machine": "A", "trained_on": "A"}}
    assert machine_line(same) == "Machine: trained and evaluated on A."
    two = {"m": {"machine": "A", "trained_on": "B"}, "n": {"machine": "A", "trained_on": "C; B"}}
    assert machine_line(two) == "Machine: trained on B; C; evaluated on A."
    assert machine_line({"m": {"machine": "A"}}) == "Machine: trained on a machine not recorded; evaluated on A."
    assert machine_line({"m": {}}).startswith("Machine: not recorded in these results' metrics")
    assert with_line("# Title\n\nTable\n", "Machine: A.") == "# Title\n\nMachine: A.\n\nTable\n"


def test_the_pin_is_a_param_checked_on_load():
    assert load_params(REPO / "params.yaml").launch.cpu_isa == "avx2"
    with pytest.raises(ParamsError, match=r"params.yaml: launch.cpu_isa: Input should be 'avx2' or 'native' \(got 'avx512'\)$"):
        load_params(REPO / "params.yaml", ["launch.cpu_isa=avx512"])


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """train_steps as a job under each launch.cpu_isa, on this machine and, where it has
    AVX-512, on an emulated AVX2 one (AVX2_MACHINE in the stage's environment, as a user's
    own variables would be), with the stage's environment after each submission."""
    machines = {"here": {}, **({"avx2": AVX2_MACHINE} if cpu_level() == "AVX512" else {})}
    results = {}
    for machine, env in machines.items():
        with pytest.MonkeyPatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            m.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
            for isa in ("avx2", "native"):
                job = run_shards("steps", train_steps, [0], launch(tmp_path_factory.mktemp(machine), isa))[0]
                results[machine, isa] = {**job, "stage_env": {k: os.environ.get(k) for k in (*AVX2_PIN, *env)}}
    return results


def test_every_job_starts_with_the_pin_and_the_stage_keeps_its_own_environment(steps):
    pinned, native = steps["here", "avx2"], steps["here", "native"]
    assert pinned["pins"] == AVX2_PIN and native["pins"] == {}
    assert pinned["isa"] == ("AVX2" if cpu_level() in ("AVX2", "AVX512") else "DEFAULT")
    assert pinned["stage_env"] == native["stage_env"] == {k: None for k in AVX2_PIN}
    if ("avx2", "avx2") in steps:  # the user's own variables: replaced in the jobs, kept in the stage
        assert steps["avx2", "avx2"]["pins"] == {**AVX2_MACHINE, **AVX2_PIN}
        assert steps["avx2", "avx2"]["stage_env"] == {**{k: None for k in AVX2_PIN}, **AVX2_MACHINE}


@pytest.mark.skipif(cpu_level() != "AVX512", reason="needs a CPU with AVX-512 (and emulates one with AVX2 only)")
def test_pinned_training_does_not_depend_on_the_instruction_set_the_machine_offers(steps):
    """The same two training steps on this AVX-512 machine and on an emulated AVX2 one:
    pinned (avx2), the weights are the same bits; native, they differ (what makes two
    machines' demos differ, and what shows that this comparison can fail)."""
    assert steps["here", "avx2"]["digest"] == steps["avx2", "avx2"]["digest"]
    assert steps["here", "native"]["digest"] != steps["avx2", "native"]["digest"]
    assert steps["here", "native"]["isa"] == "AVX512" and steps["avx2", "native"]["isa"] == "AVX2"
