"""The cost of launch.cpu_isa's avx2 pin of the math libraries, and what it buys: a training
step's CPU time pinned as a ratio to the libraries' own choice for this CPU, and whether the
weights after a few steps depend on the instruction set the machine offers.

    python bench/isa_pin.py [--repeats 3] [--steps 10]

Each run is a fresh process (the libraries read their pins as they load) training the
demo's model (params.yaml's model section; dataset.train_crop, train.batch_size) on fixed
random inputs, forward and backward with the sync loss, on one thread, as the demo's
training jobs do on a 2-core machine. Settings in turn, ``--repeats`` rounds; the median
step of each run, the best run of each setting counts (CPU time: the machine may be shared).
Also runs both settings once on an emulated AVX2-only machine (every library capped at
AVX2) and compares the final weights bit for bit. Writes reports/bench/isa_pin.json (goal:
the pinned step costs at most 1.25 times the unpinned one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_report import REPO, report

from avsf.io.machine import CPU_ISA_PINS

GOAL_RATIO = 1.25
# A machine with AVX2 but no AVX-512, as torch's kernels, oneDNN and MKL would see it.
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def train_steps(steps: int) -> dict:
    """``steps`` training steps of the demo's model in this process: the final weights'
    digest, the median step's CPU and wall seconds, torch's instruction set."""
    import torch
    import torch.nn.functional as F

    from avsf.models import build_model, example_inputs
    from avsf.models.network import to_channels_last
    from avsf.models.sync import sync_loss
    from pipeline.models import config_from_params
    from pipeline.params import load_params

    torch.set_num_threads(1)
    params = load_params(REPO / "params.yaml")
    cfg = config_from_params(params.model)
    batch, crop = params.train.batch_size, params.dataset.train_crop
    torch.manual_seed(0)
    model = to_channels_last(build_model(cfg)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = []
    for i in range(2):
        inputs = [to_channels_last(x) if x.dim() == 5 else x for x in example_inputs(cfg, crop=crop, batch=batch)]
        batches.append((inputs, torch.randn_like(inputs[-1]), torch.randint(0, cfg.head.num_classes, (batch,))))
    cpu, wall = [], []
    for step in range(steps):
        inputs, negative, labels = batches[step % 2]
        c0, w0 = time.process_time(), time.perf_counter()
        logits, levels = model(inputs, drop_audio=step % 3 == 2, negative_audio=negative)
        loss = F.cross_entropy(logits, labels) + sync_loss(levels, torch.ones(batch, dtype=torch.bool), cfg.sync.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
    median = lambda xs: sorted(xs[1:])[len(xs[1:]) // 2]  # noqa: E731 (the first step warms up)
    return {"digest": digest.hexdigest()[:16], "cpu_s": median(cpu), "wall_s": median(wall),
            "isa": torch.backends.cpu.get_cpu_capability()}


def run(steps: int, env: dict[str, str]) -> dict:
    """train_steps in a fresh process with ``env`` added to this one's."""
    done = subprocess.run([sys.executable, __file__, "--worker", str(steps)], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "reports/bench/isa_pin.json")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(train_steps(args.worker)))
        return
    settings = {"native": {}, "avx2": CPU_ISA_PINS["avx2"]}
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name, env in settings.items():
            runs[name].append(run(args.steps, env))
    best = {name: min(r["cpu_s"] for r in rs) for name, rs in runs.items()}
    # (under the pin, the machine's own caps of ATen and oneDNN are overridden: only MKL's remains)
    on_avx2 = {name: run(3, {**AVX2_MACHINE, **env}) for name, env in settings.items()}
    here = {name: run(3, env) for name, env in settings.items()}
    same = {name: here[name]["digest"] == on_avx2[name]["digest"] for name in settings}
    data = report(
        args.out, "train_step_cpu_time_avx2_pin_ratio_to_native", best["avx2"] / best["native"], "ratio", GOAL_RATIO,
        higher_is_better=False, pins=CPU_ISA_PINS["avx2"],
        workload=f"the demo's model (params.yaml), one thread, {args.steps} steps a run, the median step",
        cpu_s_per_step={name: [round(r["cpu_s"], 4) for r in rs] for name, rs in runs.items()},
        wall_s_per_step={name: [round(r["wall_s"], 4) for r in rs] for name, rs in runs.items()},
        isa={name: rs[0]["isa"] for name, rs in runs.items()},
        weights_after_3_steps={name: {"here": here[name]["digest"], "avx2_machine": on_avx2[name]["digest"]}
                               for name in settings},
        same_weights_on_an_avx2_machine=same, repeats=args.repeats,
    )
    print(f"training step {best['avx2']:.3f} s CPU pinned to avx2, {best['native']:.3f} s native: ratio "
          f"{data['value']:.2f} (goal <= {GOAL_RATIO}); the same weights on an emulated AVX2 machine: "
          f"pinned {same['avx2']}, native {same['native']}; {args.out}")


if __name__ == "__main__":
    main()
