"""Training-step throughput of AVSlowFast R50 8x8 at 224x224, batch 32, ours against the peer
(pytorchvideo's AVSlowFast, bench/peer_avslowfast.py) in the same run.

    python bench/train_step.py                          # CUDA: the peer, then ours
    python bench/train_step.py --subjects ours          # one side; with $AVSF_BENCH_RUN set, the
                                                        #   peer's figure of the same run is read back
    python bench/train_step.py --device cpu --tiny      # smoke test: tiny models, CPU

Each subject trains in each config a fresh model on synthetic inputs (SGD with momentum 0.9
and weight decay 1e-4, cross-entropy over 400 classes), ``--warmup`` steps, then ``--steps``
timed ones:

    eager_fp32       the reference
    bf16_cl          bf16 autocast + channels_last_3d + cudnn.benchmark
    bf16_cl_compile  the above + torch.compile(model), as stage train's train.compile does

Ours runs with the Audio pathway always on (DropPathway off) and no sync heads: the peer
has neither. Reports (bench_report.bench_path), each rewritten as soon as a config is done:

    peer_step.json   the peer's best clips/s; per config clips/s, step time, peak memory
    train_step.json  ours: best clips/s over the peer's best in the same run (goal >= 1.4);
                     per config the same figures and the model FLOPs utilisation, MFU =
                     2 x multiply-adds x 3 (forward + backward) x clips/s over the bf16 peak
                     of a large matmul measured in the same process
    bf16_loss.json   the loss of ours in bf16 autocast against fp32, same weights and batch:
                     |bf16 - fp32| / fp32 (goal <= 0.01)

A smoke run (off CUDA, or ``--tiny``) writes ``<name>_smoke.json`` instead, never the GPU
figures' files, and leaves torch.compile out unless ``--configs`` names it.
"""

from __future__ import annotations

import argparse
import copy
import gc
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (tests)

from bench_report import bench_device, bench_path, report, same_run_report  # noqa: E402  (puts the repository on sys.path)
from bench_report import machine as bench_machine  # noqa: E402
from avsf.models import HeadConfig, build_model, example_inputs, model_config, to_channels_last  # noqa: E402
from avsf.models.flops import count_cost  # noqa: E402

CONFIGS = {
    "eager_fp32": dict(bf16=False, channels_last=False, compile=False),
    "bf16_cl": dict(bf16=True, channels_last=True, compile=False),
    "bf16_cl_compile": dict(bf16=True, channels_last=True, compile=True),
}
SUBJECTS = ("peer", "ours")
GOAL_RATIO = 1.4  # ours over the peer's best config, same GPU, same run
GOAL_BF16_REL_DIFF = 0.01
NUM_CLASSES = 400


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models and inputs (smoke test)")
    ap.add_argument("--subjects", default=",".join(SUBJECTS), help=f"comma list of {list(SUBJECTS)}")
    ap.add_argument("--batch", type=int, default=None, help="default 32 (2 with --tiny)")
    ap.add_argument("--crop", type=int, default=None, help="default 224 (32 with --tiny)")
    ap.add_argument("--steps", type=_positive, default=None, help="timed steps (default 20; 2 with --tiny)")
    ap.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --tiny)")
    ap.add_argument("--configs", default=None,
                    help=f"comma list of {list(CONFIGS)} (default: all; without compile with --tiny or off CUDA)")
    return ap.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def make_config(tiny: bool):
    return model_config("avslowfast", 50, 8, 8, tiny=tiny, mel_bins=16 if tiny else 80, sync=False,
                        head=HeadConfig(num_classes=NUM_CLASSES))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Subject:
    """One side of the comparison: how to build its model, its inputs and its forward."""

    def __init__(self, name: str, build: Callable[[], torch.nn.Module],
                 inputs: Callable[[int, int, torch.device], list[torch.Tensor]],
                 forward: Callable[[torch.nn.Module, list[torch.Tensor]], torch.Tensor], info: dict):
        self.name, self.build, self.inputs, self.forward, self.info = name, build, inputs, forward, info


def ours(tiny: bool) -> Subject:
    cfg = make_config(tiny)
    return Subject("ours", lambda: build_model(cfg), lambda b, c, d: example_inputs(cfg, c, b, d),
                   lambda model, x: model(x, drop_audio=False), {"model": cfg.name})


def peer(tiny: bool, crop: int) -> Subject:
    import peer_avslowfast

    _, info = peer_avslowfast.build(crop, tiny)  # imports pytorchvideo now: a missing one fails here
    # Its forward overwrites the list it is given with its pathways' outputs: a new list
    # each step, as each DataLoader batch is
    return Subject("peer", lambda: peer_avslowfast.build(crop, tiny)[0],
                   lambda b, c, d: peer_avslowfast.example_inputs(b, c, d, tiny), lambda model, x: model(list(x)),
                   info)


def run_config(subject: Subject, name: str, opts: dict, args, device: torch.device, batch: int, crop: int) -> dict:
    """Time ``--steps`` training steps of a fresh model after ``--warmup`` ones."""
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = opts["bf16"] or opts["channels_last"]
    model = subject.build().to(device).train()
    inputs = subject.inputs(batch, crop, device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    if opts["channels_last"]:
        to_channels_last(model)
        inputs = [to_channels_last(x) for x in inputs]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    network = torch.compile(model) if opts["compile"] else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts["bf16"]):
            logits = subject.forward(network, inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    synchronize(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(device)
    elapsed = time.perf_counter() - started
    clips_per_s = args.steps * batch / elapsed
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:  # process high-water mark (KiB on Linux): an upper bound, not the model's alone
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {"clips_per_s": round(clips_per_s, 2), "step_ms": round(1000 * elapsed / args.steps, 2),
              "warmup_s": round(warmup_s, 2), "peak_memory_gib": round(peak_gib, 3),
              "final_loss": round(float(loss.detach()), 4), **opts}
    print(f"{subject.name:>4} {name:>16}: {clips_per_s:8.1f} clips/s  {result['step_ms']:8.1f} ms/step  "
          f"peak {peak_gib:.2f} GiB  (warm-up {warmup_s:.1f} s)", flush=True)
    return result


def release(device: torch.device) -> None:
    """Free one config's model, optimizer and compiled graphs before the next."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def matmul_peak(device: torch.device, n: int, repeats: int = 20) -> dict:
    """The bf16 FLOP/s of an n x n x n matmul on ``device``, best of 3 timings: the peak that
    MFU is measured against (measured, not the datasheet's)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - started) / repeats)
    tflops = 2 * n**3 / best / 1e12
    print(f"bf16 matmul {n}^3: {tflops:.1f} TFLOP/s", flush=True)
    return {"n": n, "tflops": round(tflops, 2), "seconds_per_matmul": best}


def bf16_agreement(cfg, device: torch.device, batch: int, crop: int) -> dict:
    """Loss of one training-mode forward (batch-statistics BN, no dropout) in fp32 and under
    bf16 autocast, same weights and batch.

    The zero-initialised final BNs are set to 0.2 and the classifier widened, so the logits
    are not ~0 (which would make any two losses agree at log(num_classes))."""
    torch.manual_seed(1)
    model = build_model(cfg).to(device).train()
    for m in model.modules():
        if getattr(m, "zero_init_gamma", False):
            torch.nn.init.constant_(m.weight, 0.2)
    torch.nn.init.normal_(model.head.projection.weight, std=0.1)
    model.head.dropout = torch.nn.Identity()  # its random mask would differ between the runs
    inputs = example_inputs(cfg, crop, batch, device)
    labels = torch.randint(0, cfg.head.num_classes, (batch,), device=device)
    losses = {}
    for precision in ("fp32", "bf16"):
        replica = copy.deepcopy(model)  # BN running stats change in training mode
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            losses[precision] = float(F.cross_entropy(replica(inputs, drop_audio=False).float(), labels))
    rel = abs(losses["bf16"] - losses["fp32"]) / abs(losses["fp32"])
    print(f"bf16 vs fp32 loss: {losses['bf16']:.5f} vs {losses['fp32']:.5f} (relative difference {rel:.4f})",
          flush=True)
    return {"fp32_loss": losses["fp32"], "bf16_loss": losses["bf16"], "rel_diff": rel,
            "batch": batch}


def best_config(results: dict) -> str | None:
    timed = [n for n, r in results.items() if "clips_per_s" in r]
    return max(timed, key=lambda n: results[n]["clips_per_s"]) if timed else None


def main(argv=None) -> int:
    args = parse_args(argv)
    device = bench_device(args.device)
    if device is None:
        return 2
    smoke = device.type != "cuda" or args.tiny
    batch = args.batch or (2 if args.tiny else 32)
    crop = args.crop or (32 if args.tiny else 224)
    args.steps = args.steps or (2 if args.tiny else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    names = [n.strip() for n in (args.configs or ",".join(c for c in CONFIGS if not (smoke and CONFIGS[c]["compile"])))
             .split(",") if n.strip()]
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    unknown = [n for n in names if n not in CONFIGS] + [s for s in subjects if s not in SUBJECTS]
    if unknown or not subjects:
        print(f"error: unknown configs or subjects {unknown}; configs: {list(CONFIGS)}, subjects: {list(SUBJECTS)}",
              file=sys.stderr)
        return 2
    cfg = make_config(args.tiny)
    macs = count_cost(cfg, crop).macs
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    suffix = "_smoke" if smoke else ""
    command = " ".join(["python", "bench/train_step.py", *(sys.argv[1:] if argv is None else argv)])
    common = dict(machine=gpu or bench_machine(), command=command, smoke=smoke, device=device.type,
                  torch=torch.__version__, crop=crop, batch=batch, timed_steps=args.steps, warmup_steps=args.warmup)
    print(f"AVSlowFast R50 8x8{' (tiny)' if args.tiny else ''} at {crop}x{crop}, batch {batch}, configs {names}, "
          f"on {common['machine']}; ours: {macs / 1e9:.2f} G multiply-adds per clip", flush=True)
    failed = False
    peer_results: dict = {}
    if "peer" in subjects:
        try:
            subject = peer(args.tiny, crop)
        except ImportError as exc:
            print(f"peer: pytorchvideo does not import ({exc}): its figures are not measured", file=sys.stderr)
            subject, failed = None, True
        for name in names if subject else []:
            peer_results[name] = _run_or_record(subject, name, args, device, batch, crop)
            failed |= "error" in peer_results[name]
            best = best_config(peer_results)
            report(bench_path(f"peer_step{suffix}"), "pytorchvideo_avslowfast_r50_8x8_train_step_clips_per_s",
                   peer_results[best]["clips_per_s"] if best else None, "clips/s", None,
                   best_config=best, configs=peer_results, complete=len(peer_results) == len(names),
                   **subject.info, **common)
    if "ours" in subjects:
        peer_complete = bool(peer_results) and len(peer_results) == len(names)
        if not peer_results:  # the peer ran in another process of this run (scripts/gpu-check.sh)
            peer_report = same_run_report(f"peer_step{suffix}") or {}
            peer_results, peer_complete = peer_report.get("configs", {}), peer_report.get("complete", False)
        peer_best = best_config(peer_results)
        peak = matmul_peak(device, 512 if args.tiny else 8192)
        subject, results = ours(args.tiny), {}

        def write() -> None:
            best = best_config(results)
            for r in results.values():
                if "clips_per_s" in r:
                    r["mfu"] = round(2 * macs * 3 * r["clips_per_s"] / (peak["tflops"] * 1e12), 4)
            ratio = (results[best]["clips_per_s"] / peer_results[peer_best]["clips_per_s"]
                     if best and peer_best else None)
            report(bench_path(f"train_step{suffix}"), "avslowfast_r50_8x8_train_step_over_pytorchvideo", ratio,
                   "ratio", GOAL_RATIO, goal_met=None if smoke or ratio is None else ratio >= GOAL_RATIO,
                   clips_per_s=results[best]["clips_per_s"] if best else None, best_config=best,
                   mfu=results[best]["mfu"] if best else None, peer_clips_per_s=(
                       peer_results[peer_best]["clips_per_s"] if peer_best else None),
                   peer_best_config=peer_best, peer_complete=peer_complete, model=subject.info["model"],
                   macs_per_clip=int(macs),
                   matmul_peak=peak, configs=results, complete=len(results) == len(names), **common)

        for name in names:
            results[name] = _run_or_record(subject, name, args, device, batch, crop)
            failed |= "error" in results[name]
            write()
            if name == "bf16_cl" or (name == names[-1] and "bf16_cl" not in names):
                # before compiling (the slowest config): a run cut short keeps this figure
                agreement = bf16_agreement(cfg, device, min(batch, 8), crop)
                report(bench_path(f"bf16_loss{suffix}"), "bf16_over_fp32_loss_rel_diff", agreement["rel_diff"],
                       "ratio", GOAL_BF16_REL_DIFF, higher_is_better=False,
                       **({"goal_met": None} if smoke else {}), model=subject.info["model"], **agreement,
                       **{k: v for k, v in common.items() if k not in ("batch", "timed_steps", "warmup_steps")})
                release(device)
    return 1 if failed else 0


def _run_or_record(subject: Subject, name: str, args, device: torch.device, batch: int, crop: int) -> dict:
    """The config's figures, or its error (the other configs still run)."""
    try:
        return run_config(subject, name, CONFIGS[name], args, device, batch, crop)
    except Exception as exc:  # noqa: BLE001  (e.g. a compile failure, out of memory)
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}", **CONFIGS[name]}
    finally:
        release(device)


if __name__ == "__main__":
    sys.exit(main())
