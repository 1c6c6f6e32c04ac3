"""The README's tables of "Running at Kinetics scale", from reports/bench/scale.json.

    python bench/scale_table.py [--report reports/bench/scale.json] [--dvc reports/bench/scale_dvc.json]

Prints, as markdown: the rehearsal per stage and N (bench/scale.py), DVC's settings at the
largest N, and the extrapolation to Kinetics-400 (260,000 clips of 10 s) on one 16-core node
and on a SLURM array over 32 such nodes. The extrapolation takes each stage's work per clip at
real size from the benches that measure it on real-size clips (trim.json: download's trim of
an 8 s segment, scaled to 10 s; ingest.json: decode of a 10 s 340x256 clip at short side 256,
and its store bytes per clip; the log-mel of 10 s of audio, timed here), and what the
rehearsal measured around that work: each job's start (a fresh interpreter importing the
stage's module, timed here; at most a thousand jobs a stage, download.shards = 512 for download), the stage's own planning and merging (its process's CPU, per clip), and DVC's hashing
(per file and per byte, from the folders' uncached setting at the largest N; one hashing
thread, as DVC's default core.checksum_jobs gives a 2-core machine: min(4, cores // 2)), and
DVC's time with the data folders tracked by their inventories (bench/scale.py --project:
scale_dvc.json), which grows with the clips, not their bytes: scaled by 260,000 / N.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench_report import REPO

from avsf.io.atomic import write_json

KINETICS_CLIPS = 260_000
CLIP_SECONDS = 10.0
CLIP_BYTES = 450e9 / KINETICS_CLIPS  # the 450 GB of Kinetics-400 clips
NODE_CORES, NODES = 16, 32
MAX_JOBS = 1000  # pipeline.launch.MAX_JOBS
SHARD_CLIPS = 32  # decode.clips_per_shard
STAGES = ("download", "decode", "spectrogram")


def logmel_seconds_per_clip() -> float:
    import torch

    from avsf.data.logmel import clip_log_mel

    torch.set_num_threads(1)
    pcm = np.random.default_rng(0).normal(0, 3000, int(CLIP_SECONDS * 16000)).astype(np.int16)
    clip_log_mel(pcm)
    started = time.perf_counter()
    for _ in range(20):
        clip_log_mel(pcm)
    return (time.perf_counter() - started) / 20


def job_start_seconds(stage: str) -> float:
    """A job's start: a fresh interpreter importing submitit's job entry point and the stage's
    module (what each job pays before its first clip), the median of 3."""
    import subprocess
    import sys

    code = f"import submitit.core.submission, pipeline.{stage}"
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def rehearsal_table(data: dict) -> list[str]:
    rows = ["| N | stage | wall (s) | s/clip | CPU s/clip | outside its jobs (s) | peak RSS, stage + jobs (MB) | "
            "peak RSS a job (MB) | jobs at once | peak open files a job | files written | DVC after it (s, % of the stage) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["results"]:
        for s in STAGES:
            st = r["repro"]["stages"][s]
            rows.append(f"| {r['clips']:,} | {s} | {st['wall_s']:.0f} | {st['s_per_clip'] * 1e3:.1f} ms | "
                        f"{st['cpu_s_per_clip'] * 1e3:.1f} ms | {st['outside_jobs_s']:.1f} | {st['peak_rss_mb']:.0f} | "
                        f"{st['peak_job_rss_mb']:.0f} | {st['peak_job_processes'] // 2} | {st['peak_job_open_files']} | "
                        f"{st['files_written']:,} | {st['dvc_after_s']:.1f} ({100 * st['dvc_overhead_fraction']:.1f}%) |")
    rows += ["", "| N | dvc status (s) | no-op dvc repro (s) | loader: train stage's reads before its job (s) | "
                 "loader: ms per training clip, 2 workers | loader: peak RSS (MB), open files a process | "
                 "evaluation's index (s) | load average (1 min) before, after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["results"]:
        lp, ev = r["loader_pass"], r["eval_index"]
        rows.append(f"| {r['clips']:,} | {r['dvc_status_s']:.1f} | {r['noop_repro_s']:.1f} | "
                    f"{lp['train_store_s'] + lp['store_identity_s'] + lp['dataset_s']:.2f} | {lp['s_per_item'] * 1e3:.2f} | "
                    f"{lp['peak_rss_mb']:.0f}, {lp['peak_process_open_files']} | "
                    f"{ev['truth_s'] + ev['views_dataset_s'] + ev['scores_by_id_s'] + ev['report_s']:.2f} | "
                    f"{r['load_before'][0]}, {r['load_after'][0]} |")
    return rows


def dvc_table(data: dict) -> list[str]:
    rows = ["| setting | DVC after download (s) | after decode (s) | after spectrogram (s) | data + cache on disk (MB) | "
            "forced decode rerun: DVC before the command, after it (s) |", "| --- | --- | --- | --- | --- | --- |"]
    for v in data["dvc_variants"]:
        st, rerun = v["stages"], v["forced_decode_rerun"]
        rows.append(f"| {v['variant']} | {st['download']['dvc_after_s']:.1f} | {st['decode']['dvc_after_s']:.1f} | "
                    f"{st['spectrogram']['dvc_after_s']:.1f} | {v['data_and_cache_bytes'] / 1e6:,.0f} | "
                    f"{rerun['dvc_before_s']:.1f}, {rerun['dvc_after_s']:.1f} |")
    return rows


def extrapolation(data: dict, inventory: dict | None = None, timed: dict | None = None) -> tuple[list[str], dict]:
    """The Kinetics-400 table; ``timed``: an earlier extrapolation whose timings of the log-mel
    and the jobs' starts are kept (they are timed here otherwise, on the machine as it is)."""
    bench = REPO / "reports" / "bench"
    trim = statistics.median(json.loads((bench / "trim.json").read_text())["seconds_per_clip"]["pinned"]) * 10 / 8
    ingest = json.loads((bench / "ingest.json").read_text())
    decode = statistics.median(ingest["seconds_per_clip"]["ingest"])
    store_bytes = ingest["store_bytes_per_clip"]
    logmel = timed["logmel_s"] if timed else logmel_seconds_per_clip()
    logmel_bytes = (1 + CLIP_SECONDS * 16000 // 256) * 80 * 2
    last = data["results"][-1]
    n, stages = last["clips"], last["repro"]["stages"]
    chosen = next((v for v in data["dvc_variants"] if v["variant"] == "uncached"), None)
    if chosen is None:
        raise SystemExit("no 'uncached' DVC variant in the report: run bench/scale.py with --dvc-variants uncached")
    # DVC hashing the folders: per byte from decode's few large shards, per file from download's many small ones
    dvc = chosen["stages"]
    per_byte = dvc["decode"]["dvc_after_s"] / stages["decode"]["bytes_written"]
    per_file = max(0.0, (dvc["download"]["dvc_after_s"] - per_byte * stages["download"]["bytes_written"])
                   / stages["download"]["files_written"])
    shards = KINETICS_CLIPS // SHARD_CLIPS
    outputs = {"download": (2 * KINETICS_CLIPS, KINETICS_CLIPS * CLIP_BYTES),
               "decode": (shards, KINETICS_CLIPS * store_bytes), "spectrogram": (shards, KINETICS_CLIPS * logmel_bytes)}
    work = {"download": trim, "decode": decode, "spectrogram": logmel}
    inventory_s = {}
    if inventory is not None:  # DVC after each stage with inventories, at N clips, scaled to Kinetics
        chosen = next((v for v in inventory["dvc_variants"] if v["variant"] == "inventory"), None)
        if chosen is None:
            raise SystemExit("no 'inventory' variant in the DVC report: run bench/scale.py --project ... "
                             "--dvc-variants inventory")
        inventory_s = {s: chosen["stages"][s]["dvc_after_s"] * KINETICS_CLIPS / inventory["clips"] for s in STAGES}
    rows = ["| stage | work a clip, one core (s) | jobs' starts (CPU h) | the stage's own pass (h) | work (CPU h) | "
            "one 16-core node (h) | DVC hashing the folders (h) | DVC with inventories (h) | 32 nodes, SLURM array (h) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    out = {}
    starts = timed["job_start_s"] if timed else {s: job_start_seconds(s) for s in work}
    jobs = {"download": NODES * NODE_CORES, "decode": min(MAX_JOBS, shards), "spectrogram": min(MAX_JOBS, shards)}
    for s in STAGES:
        st = stages[s]
        starts_h = jobs[s] * starts[s] / 3600
        own_h = st["stage_process_cpu_s"] / n * KINETICS_CLIPS / 3600
        work_h = KINETICS_CLIPS * work[s] / 3600
        files, size = outputs[s]
        dvc_h = (files * per_file + size * per_byte) / 3600
        node_h = (work_h + starts_h) / NODE_CORES + own_h
        array_h = (work_h + starts_h) / (NODE_CORES * NODES) + own_h
        inventory_h = inventory_s[s] / 3600 if inventory_s else None
        out[s] = {"work_s_per_clip": work[s], "node_h": node_h, "dvc_h": dvc_h, "dvc_inventory_h": inventory_h,
                  "array_h": array_h}
        rows.append(f"| {s} | {work[s]:.3f} | {starts_h:.2f} | {own_h:.2f} | {work_h:.1f} | {node_h:.2f} | {dvc_h:.2f} | "
                    f"{_hours(inventory_h)} | {array_h:.2f} |")
    rows.append(f"| all | | | | {sum(KINETICS_CLIPS * w for w in work.values()) / 3600:.1f} | "
                f"{sum(o['node_h'] for o in out.values()):.2f} | {sum(o['dvc_h'] for o in out.values()):.2f} | "
                f"{_hours(sum(inventory_s.values()) / 3600 if inventory_s else None)} | "
                f"{sum(o['array_h'] for o in out.values()):.2f} |")
    return rows, {"job_start_s": starts, "jobs": jobs, "dvc_per_byte_s": per_byte, "dvc_per_file_s": per_file,
                  "logmel_s": logmel, "trim_s": trim, "decode_s": decode, "store_bytes": store_bytes, "stages": out}


def _hours(h: float | None) -> str:
    return "" if h is None else f"{h:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=REPO / "reports" / "bench" / "scale.json")
    parser.add_argument("--dvc", type=Path, default=REPO / "reports" / "bench" / "scale_dvc.json",
                        help="DVC with inventories (bench/scale.py --project); skipped when absent")
    parser.add_argument("--write", action="store_true", help="keep the extrapolation in the report (kinetics_400)")
    parser.add_argument("--retime", action="store_true", help="time the log-mel and the jobs' starts again "
                        "(by default the report's earlier extrapolation's are kept)")
    args = parser.parse_args()
    data = json.loads(args.report.read_text())
    print("\n".join(rehearsal_table(data)), "\n")
    if data.get("dvc_variants"):
        print("\n".join(dvc_table(data)), "\n")
    rows, figures = extrapolation(data, json.loads(args.dvc.read_text()) if args.dvc.is_file() else None,
                                  None if args.retime else data.get("kinetics_400"))
    print("\n".join(rows), "\n")
    print(json.dumps(figures, indent=1))
    if args.write:
        data["kinetics_400"] = {**figures, "clips": KINETICS_CLIPS, "node_cores": NODE_CORES, "nodes": NODES,
                                "command": "python bench/scale_table.py --write", "table": rows}
        write_json(args.report, data)


if __name__ == "__main__":
    main()
