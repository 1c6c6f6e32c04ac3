"""DVC's hashing of the data stages' uncached outputs at real byte sizes, by core.checksum_jobs.

    python bench/dvc_hashing.py [--work /tmp/avsf-dvc-hashing] [--shards 16] [--shard-mb 160]
                                [--clips 600] [--clip-mb 1.7] [--jobs 1 2 4 16] [--rounds 3] [--keep]

This measures the setting before the inventories (pipeline/inventory.py): the big outputs of
download, decode and spectrogram as folders, `cache: false, persist: true` in dvc.yaml, of
which DVC stores no copy but md5-hashes every file after each stage (dvc_data's
_build_tree: files over 1 MiB in a thread pool of core.checksum_jobs threads, min(4, cores // 2)
by default, smaller ones one at a time) and remembers each file's hash in its state database
(site_cache_dir, keyed by the file's inode, mtime and size), so an unchanged file is read once.

A throwaway DVC project holds two such outputs shaped as a Kinetics-400 run's: `frames/`, a
store's shards (HDF5 files of random bytes with a `meta` attribute, 160 MB each: 1.33 TB over
8,125 shards), and `clips/`, download's clips (1.7 MB of random bytes each: 450 GB over 260,000)
with their JSON records; each the output of a stage whose command does nothing. For each
checksum_jobs, and each output:

    cold     its files dropped from the page cache (posix_fadvise), DVC's state emptied, then
             `dvc repro -f -s <stage>`: every byte read from the disk and hashed
    warm     the state emptied again, the files now in the page cache: the hashing alone
    fixed    `dvc repro -f -s <stage>` with the state kept: DVC's cost besides hashing
    status   `dvc status <stage>` with the state kept, the files dropped from the page cache

Hashing seconds are cold or warm less fixed, medians over ``--rounds`` rounds (the machine is
shared), each round also timing its peers: bare md5 in memory on 1 and 2 threads (what the free
cores give) and plain reads of the shards from the disk on 1 and 4 threads (what the disk gives).
Every DVC command runs in a child that reports its bytes read (/proc/self/io: rchar, all reads;
read_bytes, from the disk) and CPU seconds. Then, once: `dvc status` with the state emptied (another machine's or a lost site_cache_dir),
one core's md5 rate in memory, and the cost of fingerprinting a store without reading its
bytes (each shard's `meta` attribute read cold: what the inventories, pipeline/inventory.py, now cost in place of the hashing).

From these and the data stages' hours at Kinetics-400 scale (reports/bench/scale.json's
kinetics_400, bench/scale_table.py; the bytes from store_real.json and the issue's 450 GB of
clips), the hours DVC's hashing takes on a 16-core node and the rate it would need to stay
under 5% of each stage. Writes reports/bench/dvc_hashing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_report import REPO, bench_path, report

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@b",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@b"}
STAGES = {"decode": "frames", "download": "clips"}  # stage -> its output in the throwaway project
KINETICS_CLIPS = 260_000
CLIP_BYTES = 450e9  # the Kinetics-400 clips
SHARD_CLIPS = 32  # decode.clips_per_shard
NODE_CORES = 16
GOAL = 0.05  # issue 23: DVC's own overhead below 5% of each data stage's work

# A DVC command in a child that reports what it read and its CPU seconds (/proc/self/io counts
# every thread of the process).
DVC_CHILD = """
import json, os, resource, sys
from dvc.cli import main
rc = main(sys.argv[1:])
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
ru = resource.getrusage(resource.RUSAGE_SELF)
with open(os.environ["AVSF_DVC_IO"], "w") as f:
    json.dump({"rc": rc, "rchar": int(io["rchar"]), "read_bytes": int(io["read_bytes"]),
               "cpu_s": ru.ru_utime + ru.ru_stime}, f)
sys.exit(rc)
"""


def sh(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, capture_output=True)


def run_dvc(project: Path, *args: str) -> dict:
    io_path = project.parent / "dvc-io.json"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", DVC_CHILD, *args], cwd=project, capture_output=True, text=True,
                            env={**ENV, "AVSF_DVC_IO": str(io_path)}, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
    return {"wall_s": round(wall, 3), **json.loads(io_path.read_text()), "load": os.getloadavg()[0]}


def files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file())


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (they were written with fsync: clean)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def make_project(root: Path, shards: int, shard_bytes: int, clips: int, clip_bytes: int) -> Path:
    import h5py

    project = root / "project"
    project.mkdir(parents=True)
    sh("git", "init", "-q", cwd=project)
    sh(sys.executable, "-m", "dvc", "init", "-q", cwd=project)
    sh(sys.executable, "-m", "dvc", "config", "core.site_cache_dir", str(root / "site"), cwd=project)
    (project / "dvc.yaml").write_text(
        "stages:\n" + "".join(f"  {stage}:\n    cmd: 'true'\n    outs:\n      - {out}:\n          cache: false\n"
                              "          persist: true\n" for stage, out in STAGES.items()))
    rng = np.random.default_rng(0)
    (project / "frames").mkdir()
    for i in range(shards):
        path = project / "frames" / f"shard-{i:05d}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("frames", data=np.frombuffer(rng.bytes(shard_bytes), np.uint8))
            f.attrs["meta"] = json.dumps({"fingerprint": f"{i:032x}", "settings": {"jpeg_quality": 80}})
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    (project / "clips").mkdir()
    for i in range(clips):
        write_synced(project / "clips" / f"v{i:07d}_000010_000020.mp4", rng.bytes(clip_bytes))
        write_synced(project / "clips" / f"v{i:07d}_000010_000020.json",
                     json.dumps({"fingerprint": f"{i:032x}", "sha256": f"{i:064x}", "duration": 10.0,
                                 "notes": {}, "settings": {"crf": 18}}).encode())
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "project", cwd=project)
    return project


def empty_state(root: Path) -> None:
    shutil.rmtree(root / "site", ignore_errors=True)


def measure_jobs(root: Path, project: Path, jobs: int) -> dict:
    """One round of each output's runs at ``jobs`` checksum jobs."""
    sh(sys.executable, "-m", "dvc", "config", "core.checksum_jobs", str(jobs), cwd=project)
    out = {}
    for stage, output in STAGES.items():
        files = files_of(project / output)
        runs = {}
        evict(files)
        empty_state(root)
        runs["cold"] = run_dvc(project, "repro", "-f", "-s", stage)
        empty_state(root)
        runs["warm"] = run_dvc(project, "repro", "-f", "-s", stage)
        runs["fixed"] = run_dvc(project, "repro", "-f", "-s", stage)
        evict(files)
        runs["status"] = run_dvc(project, "status", stage)
        out[stage] = runs
    return out


def summarise(project: Path, rounds: list[dict]) -> dict:
    """Per checksum_jobs and output: the median over rounds of each run, hashing seconds (cold
    or warm less fixed) and MB/s."""
    out = {}
    for jobs in rounds[0]:
        out[jobs] = {}
        for stage, output in STAGES.items():
            files = files_of(project / output)
            size = sum(p.stat().st_size for p in files)
            runs = [r[jobs][stage] for r in rounds]
            med = {k: {m: statistics.median(r[k][m] for r in runs) for m in runs[0][k]} for k in runs[0]}
            hashing = {k: statistics.median(max(1e-3, r[k]["wall_s"] - r["fixed"]["wall_s"]) for r in runs)
                       for k in ("cold", "warm")}
            out[jobs][stage] = {
                "files": len(files), "bytes": size, "runs": med, "rounds": runs,
                "hashing_s": {k: round(v, 3) for k, v in hashing.items()},
                "mb_s": {k: round(size / v / 1e6, 1) for k, v in hashing.items()},
                "cpu_per_wall_warm": round(med["warm"]["cpu_s"] / med["warm"]["wall_s"], 2),
                # rchar counts the interpreter's own imports too (about 12 MB)
                "status_reads_the_data": med["status"]["rchar"] >= size / 2}
            o = out[jobs][stage]
            print(f"checksum_jobs {jobs} {stage}: {len(files)} files, {size / 1e9:.2f} GB; hashing cold "
                  f"{hashing['cold']:.1f} s ({o['mb_s']['cold']:.0f} MB/s, read from disk "
                  f"{med['cold']['read_bytes'] / 1e9:.2f} GB), warm {hashing['warm']:.1f} s ({o['mb_s']['warm']:.0f} "
                  f"MB/s, CPU/wall {o['cpu_per_wall_warm']}); fixed {med['fixed']['wall_s']:.1f} s; status "
                  f"{med['status']['wall_s']:.1f} s reading {med['status']['rchar'] / 1e6:.1f} MB", flush=True)
    return out


def md5_mb_s(threads: int, mib: int = 256) -> float:
    """md5 in memory over 1 MiB updates (DVC's chunks), ``mib`` MiB a thread: what the CPUs
    free here give, the peer of DVC's rate at the same threads."""
    import hashlib
    import threading

    block = np.random.default_rng(1).bytes(1 << 20)

    def work() -> None:
        h = hashlib.md5()
        for _ in range(mib):
            h.update(block)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * mib * len(block) / (time.perf_counter() - started) / 1e6


def disk_read_mb_s(paths: list[Path], threads: int) -> float:
    """Plain reads of these files from the disk (dropped from the page cache first), 1 MiB at
    a time, one file a thread at a time: the disk's rate without md5."""
    from concurrent.futures import ThreadPoolExecutor

    def read(path: Path) -> int:
        with open(path, "rb", buffering=0) as f:
            n = 0
            while chunk := f.read(1 << 20):
                n += len(chunk)
        return n

    evict(paths)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(read, paths))
    return total / (time.perf_counter() - started) / 1e6


def meta_read_s(project: Path) -> float:
    """Seconds a shard to read its `meta` attribute from the disk (the page cache emptied)."""
    import h5py

    shards = files_of(project / "frames")
    evict(shards)
    started = time.perf_counter()
    for path in shards:
        with h5py.File(path, "r") as f:
            json.loads(f.attrs["meta"])
    return (time.perf_counter() - started) / len(shards)


def kinetics(measured: dict, md5_core: float, disk: float, meta_s: float) -> dict:
    """Hours of DVC's hashing for Kinetics-400 on a 16-core node against each stage's hours.

    A checksum job hashes one file at a time, its md5 free of the GIL: ``jobs`` threads hash at
    most ``jobs`` cores' md5 (one core's here, times DVC's efficiency on one thread: its warm rate
    over bare md5's) and at most what the disk reads."""
    scale = json.loads((REPO / "reports/bench/scale.json").read_text())["kinetics_400"]
    store = json.loads((REPO / "reports/bench/store_real.json").read_text())
    chosen = store["kinetics_400"][store["chosen_default"]]
    shards = KINETICS_CLIPS // SHARD_CLIPS
    # stage: (files, bytes, the output here shaped as its files)
    outputs = {"download": (2 * KINETICS_CLIPS, CLIP_BYTES, "download"),
               "decode": (shards, chosen["frame_store_tb"] * 1e12, "decode"),
               "spectrogram": (shards, chosen["logmel_store_tb"] * 1e12, "decode")}
    per_file = scale["dvc_per_file_s"]  # DVC's cost a file besides its bytes (bench/scale.py, 32,000 clips)
    stages = {}
    for s, (files, size, shape) in outputs.items():
        here = measured["1"][shape]["mb_s"]
        efficiency = min(1.0, here["warm"] / md5_core)
        rates = {"checksum_jobs 1 (the default on 2-3 cores), as measured here": here["cold"] * 1e6,
                 "checksum_jobs 4 (the default on 8 cores or more), a disk as this machine's":
                     min(4 * md5_core * efficiency, disk) * 1e6,
                 "checksum_jobs 16, a disk as this machine's": min(NODE_CORES * md5_core * efficiency, disk) * 1e6,
                 "checksum_jobs 16, from the page cache (16 cores' md5)": NODE_CORES * md5_core * efficiency * 1e6}
        node_h, array_h = scale["stages"][s]["node_h"], scale["stages"][s]["array_h"]
        hours = {k: (files * per_file + size / r) / 3600 for k, r in rates.items()}
        budget_s = GOAL * node_h * 3600 - files * per_file
        stages[s] = {"files": files, "bytes": size, "node_h": round(node_h, 3), "array_h": round(array_h, 3),
                     "dvc_efficiency_one_thread": round(efficiency, 3),
                     "rates_mb_s": {k: round(v / 1e6) for k, v in rates.items()},
                     "hashing_h": {k: round(v, 3) for k, v in hours.items()},
                     "fraction_of_node_h": {k: round(v / node_h, 4) for k, v in hours.items()},
                     "read_rate_for_5pct_gb_s": round(size / budget_s / 1e9, 2) if budget_s > 0 else None}
    # The proposal: each store tracked by its index and per-shard fingerprints (the shards' meta,
    # or a digest each job computes of what it wrote), not by DVC reading every byte back
    frames = chosen["frame_store_tb"] * 1e12
    proposal = {"meta_read_s_a_shard": round(meta_s, 5), "store_fingerprints_h": round(shards * meta_s / 3600, 4),
                "store_fingerprints_fraction_of_decode": round(shards * meta_s / 3600 / scale["stages"]["decode"]["node_h"], 4),
                "in_job_md5_cpu_h": round(frames / (md5_core * 1e6) / 3600, 3),
                "decode_work_cpu_h": round(KINETICS_CLIPS * scale["decode_s"] / 3600, 2)}
    proposal["in_job_md5_fraction_of_decode_cpu"] = round(proposal["in_job_md5_cpu_h"] / proposal["decode_work_cpu_h"], 4)
    return {"md5_core_mb_s": round(md5_core), "disk_read_mb_s": round(disk), "stages": stages, "proposal": proposal,
            "sources": "reports/bench/scale.json kinetics_400 (node_h, array_h, dvc_per_file_s, decode_s); "
                       "store_real.json kinetics_400 at its chosen_default (frame and log-mel store bytes); "
                       "450 GB of clips (issue 23)"}


MARK = ".avsf-dvc-hashing"  # marks --work as this bench's own, which it may delete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/avsf-dvc-hashing"))
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--shard-mb", type=float, default=160.0)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--clip-mb", type=float, default=1.7)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4, 16], help="core.checksum_jobs (1 among them)")
    parser.add_argument("--rounds", type=int, default=3, help="of every measurement; medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway project")
    args = parser.parse_args()
    if 1 not in args.jobs:
        parser.error("--jobs must include 1")
    if args.work.exists() and any(args.work.iterdir()) and not (args.work / MARK).is_file():
        parser.error(f"--work {args.work} holds files this bench did not write: name a new or empty folder")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    (args.work / MARK).write_text("bench/dvc_hashing.py's throwaway project: deleted by its next run\n")
    started = time.time()
    rounds, md5, disk = [], {1: [], 2: []}, {1: [], 4: []}
    try:
        project = make_project(args.work, args.shards, int(args.shard_mb * 1e6), args.clips, int(args.clip_mb * 1e6))
        print(f"wrote the project in {time.time() - started:.0f} s", flush=True)
        shards = files_of(project / "frames")
        for r in range(args.rounds):  # the machine is shared: rounds, each in another order
            for t, rates in md5.items():
                rates.append(md5_mb_s(t))
            for t, rates in disk.items():
                rates.append(disk_read_mb_s(shards, t))
            order = args.jobs if r % 2 == 0 else args.jobs[::-1]
            rounds.append({str(j): measure_jobs(args.work, project, j) for j in order})
            print(f"round {r + 1}: md5 {md5[1][-1]:.0f} / {md5[2][-1]:.0f} MB/s on 1 / 2 threads, disk "
                  f"{disk[1][-1]:.0f} / {disk[4][-1]:.0f} MB/s on 1 / 4 threads, load {os.getloadavg()[0]:.2f}",
                  flush=True)
        measured = summarise(project, rounds)
        empty_state(args.work)
        lost_state = {}
        for stage, output in STAGES.items():
            evict(files_of(project / output))
            lost_state[stage] = run_dvc(project, "status", stage)
            print(f"dvc status {stage}, state emptied: {lost_state[stage]['wall_s']:.1f} s, read from disk "
                  f"{lost_state[stage]['read_bytes'] / 1e9:.2f} GB", flush=True)
        meta_s = meta_read_s(project)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    md5_rates = {t: round(statistics.median(v)) for t, v in md5.items()}
    disk_rates = {t: round(statistics.median(v)) for t, v in disk.items()}
    k400 = kinetics(measured, md5_rates[1], max(disk_rates.values()), meta_s)
    decode = k400["stages"]["decode"]
    chosen = "checksum_jobs 16, a disk as this machine's"
    report(bench_path("dvc_hashing"), "DVC's hashing of the Kinetics-400 frame store after decode on a 16-core node "
           "(core.checksum_jobs 16, a disk reading as this machine's), as a fraction of decode's hours there",
           decode["fraction_of_node_h"][chosen], "fraction", GOAL, higher_is_better=False,
           cores=os.cpu_count(), rounds=args.rounds, md5_mb_s_by_threads=md5_rates, disk_read_mb_s_by_threads=disk_rates,
           checksum_jobs=measured, status_with_state_lost=lost_state, kinetics_400=k400,
           wall_s=round(time.time() - started),
           note="hashing seconds: a forced dvc repro -f -s of a stage whose command does nothing, less the same with "
                "DVC's state kept (no hashing), medians over rounds; cold: the files dropped from the page cache first")
    print(json.dumps(k400, indent=1))


if __name__ == "__main__":
    main()
