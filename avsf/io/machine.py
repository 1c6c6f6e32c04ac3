"""Which machine produced a result, in one line: results recorded on one machine differ
from another's in their float digits (the math libraries pick their code by the CPU), so
every metrics file and summary names it.

    AMD EPYC (x86_64, AVX512, 2 cores), torch 2.13.0+cpu on the CPU (AVX2, 1 thread), math pinned to avx2
    Intel Xeon Gold 6338 (x86_64, AVX512, 16 cores), torch 2.5.1+cu124 on NVIDIA H100 80GB HBM3 (CPU AVX512, 14 threads)

The CPU's own widest vector instructions follow its model; torch's part names the instruction
set its kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``) and its threads; a
pin of the math libraries set in the environment (launch.cpu_isa: :data:`CPU_ISA_PINS`) ends
the line. Free of heavy imports: torch is read only when it is already imported (every job
imports it) or asked for.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# The environment's pins of the math libraries' code paths: torch's own kernels (ATen),
# oneDNN's (its convolutions), MKL's (matrix products, FFTs), numpy's.
PIN_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
                 "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES")
# launch.cpu_isa: the environment every job starts with (read by the libraries as they load).
# avx2: torch's own kernels and oneDNN's at AVX2, which x86-64 server CPUs have had since 2013,
# and MKL on its COMPATIBLE branch, the one it documents as giving the same results on Intel
# and other (AMD) CPUs (its AVX2 branch is Intel's alone: elsewhere it falls back to the
# CPU's own). An AVX-512 machine then computes what an AVX2 one does: without the pin a few
# training steps of the demo's model end in other weights (tests/test_machine.py). Cost on
# an AMD EPYC: 1.15x the CPU time of a training step (bench/isa_pin.py; README "What holds
# across machines").
CPU_ISA_PINS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's, e.g. 'AMD EPYC'), or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cpu_level() -> str | None:
    """The widest x86 vector instructions the CPU has (AVX512, AVX2, AVX, SSE), from
    /proc/cpuinfo's flags; None elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return next((name for flag, name in (("avx512f", "AVX512"), ("avx2", "AVX2"), ("avx", "AVX"))
                 if flag in flags), "SSE")


def cpu_description() -> str:
    """The CPU this runs on, e.g. 'AMD EPYC (x86_64, AVX512, 2 cores)'."""
    level = cpu_level()
    return f"{cpu_model()} ({platform.machine()}{f', {level}' if level else ''}, {os.cpu_count()} cores)"


def pins() -> str:
    """The environment's pins of the math libraries: a launch.cpu_isa pin by name ('math
    pinned to avx2'), others as they are set ('pinned ATEN_CPU_CAPABILITY=avx2'), or ''."""
    held = {name: os.environ[name] for name in PIN_VARIABLES if os.environ.get(name)}
    named = next((name for name, env in CPU_ISA_PINS.items() if env and env == held), None)
    if named:
        return f"math pinned to {named}"
    return "pinned " + " ".join(f"{k}={v}" for k, v in held.items()) if held else ""


def machine_description(device: str | None = None, with_torch: bool | None = None) -> str:
    """One line naming the machine: the CPU, and with torch its version, the instruction set
    its kernels use, its threads and, for ``device`` 'cuda', the GPU it runs on. ``with_torch``
    None: only when torch is already imported (no import for a summary's sake)."""
    parts = [cpu_description()]
    if with_torch or (with_torch is None and "torch" in sys.modules):
        import torch

        isa, threads = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
        threads = f"{threads} thread{'s' if threads != 1 else ''}"
        if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(torch.device(device))
            parts.append(f"torch {torch.__version__} on {gpu} (CPU {isa}, {threads})")
        else:
            parts.append(f"torch {torch.__version__} on the CPU ({isa}, {threads})")
    pinned = pins()
    if pinned:
        parts.append(pinned)
    return ", ".join(parts)


def joined(machines) -> str | None:
    """Distinct machine descriptions (each may be several, joined already) in first-seen
    order, joined by '; ' (None: none known)."""
    seen: list[str] = []
    for machine in machines:
        for one in (machine or "").split("; "):
            if one and one not in seen:
                seen.append(one)
    return "; ".join(seen) or None
