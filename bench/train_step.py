"""Training-step throughput of AVSlowFast R50 8x8 at 224x224 (forward, backward, SGD step).

    python bench/train_step.py                          # CUDA, batch 32, every config below
    python bench/train_step.py --device cpu --tiny      # smoke test: tiny model, CPU

Each config builds a fresh model and times ``--steps`` steps after ``--warmup`` steps on
synthetic inputs (the Audio pathway always on: DropPathway off, the worst case):

    eager_fp32       the reference
    bf16_cl          bf16 autocast + channels_last(_3d) + cudnn.benchmark
    bf16_cl_compile  the above + torch.compile

It also checks that a bf16-autocast forward gives the fp32 loss (same weights, same batch),
and writes clips/s, step time, peak memory and model FLOPs utilisation (MFU = 2 x
multiply-adds x 3 (forward + backward) x clips/s / peak FLOP/s) to reports/bench/. A smoke
run writes ``train_step_cpu_smoke.json`` (off CUDA) or ``train_step_tiny_smoke.json`` (``--tiny``
on CUDA), never the GPU figure's file.
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (tests)

from bench_report import machine as bench_machine  # noqa: E402  (puts the repository on sys.path)
from bench_report import report  # noqa: E402
from avsf.models import build_model, example_inputs, model_config, to_channels_last  # noqa: E402
from avsf.models.flops import count_cost  # noqa: E402

CONFIGS = {
    "eager_fp32": dict(bf16=False, channels_last=False, compile=False),
    "bf16_cl": dict(bf16=True, channels_last=True, compile=False),
    "bf16_cl_compile": dict(bf16=True, channels_last=True, compile=True),
}
GOAL_CLIPS_PER_S = 300.0  # on one H100
PEERS = {  # pytorchvideo AVSlowFast R50 8x8, same GPU kind, from the issue
    "pytorchvideo_eager_fp32": 78.0, "pytorchvideo_bf16_channels_last": 140.0,
    "pytorchvideo_bf16_channels_last_compile": 215.0,
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model and inputs (smoke test)")
    ap.add_argument("--batch", type=int, default=None, help="default 32 (4 with --tiny)")
    ap.add_argument("--crop", type=int, default=None, help="default 224 (32 with --tiny)")
    ap.add_argument("--steps", type=_positive, default=20, help="timed steps (at least 1)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    ap.add_argument("--peak-tflops", type=float, default=800.0, help="bf16 peak of the GPU, for MFU")
    ap.add_argument("--out", default=None, help="JSON path (default reports/bench/train_step[_cpu_smoke].json)")
    return ap.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def make_config(tiny: bool):
    return model_config("avslowfast", 50, 8, 8, tiny=tiny, mel_bins=16 if tiny else 80, sync=False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_fn(model, optimizer, bf16: bool, device: torch.device):
    def step(inputs, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs, drop_audio=False)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def run_config(name: str, opts: dict, args, cfg, device: torch.device, batch: int, crop: int) -> dict:
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = opts["bf16"] or opts["channels_last"]
    model = build_model(cfg).to(device).train()
    inputs = example_inputs(cfg, crop, batch, device)
    labels = torch.randint(0, cfg.head.num_classes, (batch,), device=device)
    if opts["channels_last"]:
        to_channels_last(model)
        inputs = [to_channels_last(x) for x in inputs]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    step = train_step_fn(model, optimizer, opts["bf16"], device)
    if opts["compile"]:
        step = torch.compile(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.warmup):
        loss = step(inputs, labels)
    synchronize(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step(inputs, labels)
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
    print(f"{name:>16}: {clips_per_s:8.1f} clips/s  {result['step_ms']:8.1f} ms/step  "
          f"peak {peak_gib:.2f} GiB  (warm-up {warmup_s:.1f} s)", flush=True)
    return result


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
    # 2%: bf16 keeps 8 bits of mantissa; features drift ~1-3% through a ResNet-50
    return {"fp32_loss": round(losses["fp32"], 5), "bf16_loss": round(losses["bf16"], 5),
            "rel_diff": round(rel, 5), "tolerance": 0.02, "agree": rel <= 0.02}


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available; use --device cpu --tiny for a smoke test", file=sys.stderr)
        return 2
    batch = args.batch or (4 if args.tiny else 32)
    crop = args.crop or (32 if args.tiny else 224)
    cfg = make_config(args.tiny)
    macs = count_cost(cfg, crop).macs
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"error: unknown configs {unknown}; known: {list(CONFIGS)}", file=sys.stderr)
        return 2
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else bench_machine()
    print(f"{cfg.name} at {crop}x{crop}, batch {batch}, {macs / 1e9:.2f} G multiply-adds per clip, on {machine}")
    if torch.__version__.startswith("2.9"):
        print("warning: torch 2.9 disables cuDNN for bf16 3D convolutions; bf16 figures will be low")
    results = {n: run_config(n, CONFIGS[n], args, cfg, device, batch, crop) for n in names}
    for r in results.values():
        r["mfu"] = round(2 * macs * 3 * r["clips_per_s"] / (args.peak_tflops * 1e12), 4)
    agreement = bf16_agreement(cfg, device, min(batch, 8), crop)
    print(f"bf16 vs fp32 loss: {agreement['bf16_loss']} vs {agreement['fp32_loss']} "
          f"(rel {agreement['rel_diff']:.4f}, {'agree' if agreement['agree'] else 'DISAGREE'})")
    best = max(results, key=lambda n: results[n]["clips_per_s"])
    smoke = device.type != "cuda" or args.tiny
    suffix = "" if not smoke else "_tiny_smoke" if device.type == "cuda" else "_cpu_smoke"
    out = Path(args.out or f"reports/bench/train_step{suffix}.json")
    extra = {}
    if "eager_fp32" in results:
        extra["speedup_vs_eager_fp32"] = round(results[best]["clips_per_s"] / results["eager_fp32"]["clips_per_s"], 3)
    report(
        out, f"{cfg.name}_train_step_clips_per_s" + ("_smoke" if smoke else ""), results[best]["clips_per_s"],
        "clips/s", GOAL_CLIPS_PER_S,
        goal_met=None if smoke else results[best]["clips_per_s"] >= GOAL_CLIPS_PER_S,
        machine=machine,
        command=" ".join(["python", "bench/train_step.py", *(sys.argv[1:] if argv is None else argv)]),
        smoke=smoke, device=device.type, torch=torch.__version__, model=cfg.name,
        crop=crop, batch=batch, gmacs_per_clip=round(macs / 1e9, 3), best_config=best,
        peak_tflops_for_mfu=args.peak_tflops, configs=results, bf16_vs_fp32=agreement,
        peers_clips_per_s=PEERS, **extra,
    )
    print(f"wrote {out}")
    return 0 if agreement["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
