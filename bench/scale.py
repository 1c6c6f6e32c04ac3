"""Kinetics scale on one machine: the data stages and DVC around them at N clips.

    python bench/scale.py [--clips 2000 8000 32000] [--work /tmp/avsf-scale] [--short-side 32]
                          [--dvc-variants copy hardlink uncached inventory] [--code DIR] [--keep]
    python bench/scale.py --project DIR [--dvc-variants uncached inventory] [--code DIR]
                          [--baseline reports/bench/scale_exp.json] [--name scale_dvc]

For each N: a Kinetics-400-shaped workload (bench/kinetics_workload.py: the real manifest
format, 400 classes, missing, corrupt and silent sources, short small videos linked per id)
inside a copy of the project (dvc.yaml, params.yaml restricted to Kinetics and the datasets
its checks need, stages/, pipeline/, avsf/ of the repository or of ``--code``; its own git
and DVC repository), then

    dvc repro download@kinetics decode@kinetics spectrogram@kinetics    the real stages, local jobs
    one training epoch's loader pass    the train stage's own reads of the store before its job
                                         (train_store, store_identity), then ClipDataset's train
                                         split through a DataLoader (train.workers), no model
    the evaluation's index              Kinetics' evaluation_truth, the test views' ClipDataset,
                                         the scores by id and the official report (random scores)
    dvc status, a no-op dvc repro       on the same three stages

Each is watched by sampling its process tree every 0.2 s (psutil): wall time (first to last
sight of the stage's process), CPU seconds, the span of its jobs (the time outside it is
the stage's own planning and merging), peak RSS and open files (summed over the stage's
processes, and the largest single process), processes at once. DVC's own time is the repro's
wall less its stages' walls: before the first stage (reading dvc.yaml, hashing the
dependencies), and after each (hashing and caching its outputs, writing dvc.lock).

At the largest N, ``--dvc-variants`` measures what DVC costs under other settings, on the
same outputs: DVC's cache and dvc.lock are removed and every file of the data gets a fresh
inode and mtime (so DVC's state, which knows a file's hash by those, knows none), then the
three stages are reproduced again; every stage finds its work done (clips and shards are
kept: the stages resume) and DVC hashes and stores everything anew, as after a first run:

    copy       the big outputs (clips, frames, logmel) as folders, cached with DVC's default
               cache type (a copy, on a filesystem without reflinks): the project's first settings
    hardlink   the same with .dvc/config cache.type = hardlink,symlink
    uncached   the folders with cache: false: the project's second settings
    inventory  each folder tracked by its inventory (pipeline/inventory.py): the project's dvc.yaml now

each with its disk use (data and cache, links counted once), then a forced rerun of decode
(`dvc repro -f -s decode@kinetics`: what a resumed or changed stage costs DVC before and
after its command; with links, DVC first copies every linked file of a persist output out
of its cache, "unprotect").

``--project DIR`` measures only the variants, on a project an earlier run kept (--keep, or
bench/scale_exp.py's), with its code refreshed from ``--code``; the report is
reports/bench/<name>.json (default scale_dvc).

Writes reports/bench/scale.json: the worst growth of any stage's seconds per clip from the
smallest to the largest N (goal <= 1.25: nothing grows faster than N), every figure beside
it. The machine is shared: its load average is recorded at each step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

# (bench_report and the workload generator import the repository's avsf: only the parent
# imports them, the children measure the project's own copy of the code)
REPO = Path(__file__).resolve().parents[1]

STAGES = ("download", "decode", "spectrogram")
TARGETS = tuple(f"{s}@kinetics" for s in STAGES)
CODE = ("dvc.yaml", "stages", "pipeline", "avsf")
BIG_OUTPUTS = {"download": "clips", "decode": "frames", "spectrogram": "logmel"}  # layout.DATA keys
GOAL_GROWTH = 1.25
GOAL_DVC = 0.05
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@b",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@b", "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- watching processes


class TreeSampler(threading.Thread):
    """Samples the process tree under ``pid`` every ``interval`` s and keeps, per group of
    processes (``group(cmdline)``: a stage's own process and its jobs), first and last sight,
    peak RSS and open files (summed, and of the largest process), processes at once, and the
    CPU seconds each process was last seen to have used."""

    def __init__(self, pid: int, group, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.group, self.interval = pid, group, interval
        self.groups: dict[str, dict[str, Any]] = {}
        self.cpu: dict[tuple[int, float], tuple[str, float]] = {}  # (pid, create time) -> (group, cpu s)
        self._stop_event = threading.Event()
        self._cmdlines: dict[tuple[int, float], str] = {}

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> "TreeSampler":
        self._stop_event.set()
        self.join()
        return self

    def sample(self) -> None:
        now = time.monotonic()
        try:
            procs = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
        except psutil.Error:
            return
        totals: dict[str, dict[str, float]] = {}
        for proc in procs:
            try:
                key = (proc.pid, proc.create_time())
                if key not in self._cmdlines:
                    self._cmdlines[key] = " ".join(proc.cmdline())
                name = self.group(self._cmdlines[key])
                if name is None:
                    continue
                with proc.oneshot():
                    rss, fds, cpu = proc.memory_info().rss, proc.num_fds(), sum(proc.cpu_times()[:2])
            except psutil.Error:
                continue
            self.cpu[key] = (name, cpu)
            for label in (name, *(["jobs:" + name.split(":", 1)[1]] if name.startswith("job:") else [])):
                t = totals.setdefault(label, {"rss": 0, "fds": 0, "procs": 0, "max_rss": 0, "max_fds": 0})
                t["rss"] += rss
                t["fds"] += fds
                t["procs"] += 1
                t["max_rss"] = max(t["max_rss"], rss)
                t["max_fds"] = max(t["max_fds"], fds)
        for label, t in totals.items():
            g = self.groups.setdefault(label, {"first": now, "last": now, "peak_rss": 0, "peak_fds": 0,
                                               "peak_procs": 0, "peak_process_rss": 0, "peak_process_fds": 0})
            g["last"] = now
            g["peak_rss"] = max(g["peak_rss"], t["rss"])
            g["peak_fds"] = max(g["peak_fds"], t["fds"])
            g["peak_procs"] = max(g["peak_procs"], t["procs"])
            g["peak_process_rss"] = max(g["peak_process_rss"], t["max_rss"])
            g["peak_process_fds"] = max(g["peak_process_fds"], t["max_fds"])

    def cpu_seconds(self, *names: str) -> float:
        return sum(cpu for name, cpu in self.cpu.values() if name in names)


def stage_group(cmdline: str) -> str | None:
    """stage:<name> for a stage's own process, job:<name> for its jobs (submitit's
    controllers and tasks, known by their log folder), dvc for DVC itself."""
    if m := re.search(r"stages/(\w+)\.py", cmdline):
        return f"stage:{m.group(1)}"
    if m := re.search(r"submitit\S* \S*/(\w+)/%j", cmdline):
        return f"job:{m.group(1)}"
    if " dvc " in f" {cmdline} " or "-m dvc" in cmdline:
        return "dvc"
    return None


def run_watched(cmd: list[str], cwd: Path, group=stage_group, timeout: float = 6 * 3600,
                ) -> tuple[float, str, TreeSampler]:
    """Run ``cmd`` in ``cwd``, sampling its process tree; (wall s, output, sampler)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=project_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    sampler = TreeSampler(proc.pid, group)
    sampler.start()
    out, _ = proc.communicate(timeout=timeout)
    wall = time.monotonic() - started
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    sampler.started = started
    return wall, out, sampler


def project_env(project: Path) -> dict[str, str]:
    """The stages (and everything else run in a project) import the project's own copy of the code."""
    return {**ENV, "PYTHONPATH": str(project)}


def sh(*cmd: str, cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=project_env(cwd), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    started = time.monotonic()
    out = sh(*cmd, cwd=cwd)
    return time.monotonic() - started, out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- the project


def make_project(root: Path, clips: int, code: Path, short_side: int, workload_seed: int = 0) -> dict:
    """A copy of the project restricted to Kinetics, with the workload inside it, committed."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    copy_code(code, root)
    from kinetics_workload import write_workload

    workload = write_workload(root / "workload", clips, seed=workload_seed)
    raw = yaml.safe_load((code / "params.yaml").read_text())
    kinetics = raw["datasets"]["kinetics"]
    kinetics.update(annotations="workload/annotations", source="workload/videos",
                    manifests=["kinetics-400_train.csv", "kinetics-400_val.csv"])
    # Kinetics, and the probe's datasets, which ssl.probe's checks need; nothing is fine-tuned.
    raw["datasets"] = {name: raw["datasets"][name] for name in ("kinetics", "ucf101", "hmdb51")}
    raw["finetune"]["datasets"] = []
    raw["recipes"] = {k: v for k, v in raw.get("recipes", {}).items() if k in ("kinetics", "ssl", "probe")}
    raw["decode"]["short_side"] = short_side
    raw["launch"]["cluster"] = "local"
    # one core a job: decode and spectrogram jobs work on one clip at a time (local_slots: 2 here)
    raw["launch"]["resources"].update(cpus_per_task=1, timeout_min=600)
    raw["model"]["num_classes"] = 400
    raw["train"]["workers"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / ".gitignore").write_text("__pycache__/\n/logs/\n/data/\n/workload/\n")
    sh("git", "init", "-q", cwd=root)
    sh(*dvc("init", "-q"), cwd=root)
    sh(*dvc("config", "core.analytics", "false"), cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "project", cwd=root)
    return workload


def copy_code(code: Path, project: Path) -> None:
    """The project's copy of ``code``'s dvc.yaml, stages/, pipeline/ and avsf/ (replacing its own)."""
    for name in CODE:
        source, dest = code / name, project / name
        if dest.is_dir():
            shutil.rmtree(dest)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, dest, **(
            {"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if source.is_dir() else {}))


def files_and_bytes(path: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def disk_bytes(*paths: Path) -> int:
    """Bytes on disk of ``paths`` together, each inode counted once (du -s)."""
    out = subprocess.run(["du", "-s", "-B1", *[str(p) for p in paths if p.exists()]], capture_output=True,
                         text=True).stdout
    return sum(int(line.split()[0]) for line in out.splitlines())


# --------------------------------------------------------------------------- one N


def repro_figures(project: Path, wall: float, sampler: TreeSampler) -> dict[str, Any]:
    """Per stage: wall, CPU, jobs' span, the time outside them, peaks; DVC's gaps."""
    metrics = {s: json.loads((project / "reports/kinetics/metrics" / f"{s}.json").read_text()) for s in STAGES}
    outputs = {"download": project / "data/kinetics/clips", "decode": project / "data/kinetics/store/frames",
               "spectrogram": project / "data/kinetics/store/logmel"}
    stages, previous_end = {}, sampler.started
    for s in STAGES:
        g, jobs = sampler.groups[f"stage:{s}"], sampler.groups.get(f"jobs:{s}", {})
        stage_wall = g["last"] - g["first"]
        jobs_span = (jobs["last"] - jobs["first"]) if jobs else 0.0
        clips = metrics["download"]["total_rows"] if s == "download" else metrics[s]["clips"] + (
            metrics[s]["failed"] - metrics[s]["upstream_failures"])
        files, size = files_and_bytes(outputs[s])
        stages[s] = {
            "clips": clips, "wall_s": round(stage_wall, 2), "s_per_clip": stage_wall / clips,
            "cpu_s": round(sampler.cpu_seconds(f"stage:{s}", f"job:{s}"), 2),
            "cpu_s_per_clip": sampler.cpu_seconds(f"stage:{s}", f"job:{s}") / clips,
            "jobs_span_s": round(jobs_span, 2), "outside_jobs_s": round(stage_wall - jobs_span, 2),
            "stage_process_cpu_s": round(sampler.cpu_seconds(f"stage:{s}"), 2),
            "peak_rss_mb": round((g["peak_rss"] + jobs.get("peak_rss", 0)) / 2**20, 1),
            "peak_stage_process_rss_mb": round(g["peak_process_rss"] / 2**20, 1),
            "peak_job_rss_mb": round(jobs.get("peak_process_rss", 0) / 2**20, 1),
            "peak_open_files": g["peak_fds"] + jobs.get("peak_fds", 0),
            "peak_job_open_files": jobs.get("peak_process_fds", 0),
            "peak_job_processes": jobs.get("peak_procs", 0),
            "files_written": files, "bytes_written": size,
            "dvc_before_s": round(g["first"] - previous_end, 2),  # DVC between the last stage (or start) and this
            "metrics": {k: v for k, v in metrics[s].items() if not isinstance(v, dict)},
        }
        previous_end = g["last"]
    end = sampler.started + wall
    stages["spectrogram"]["dvc_after_s"] = round(end - previous_end, 2)
    for a, b in zip(STAGES, STAGES[1:]):  # the gap after a stage: DVC commits its outputs, checks the next
        stages[a]["dvc_after_s"] = stages[b]["dvc_before_s"]
    for s in STAGES:
        stages[s]["dvc_overhead_fraction"] = round(stages[s]["dvc_after_s"] / stages[s]["wall_s"], 4)
    return {"repro_wall_s": round(wall, 2), "stage_wall_s": round(sum(st["wall_s"] for st in stages.values()), 2),
            "dvc_s": round(wall - sum(st["wall_s"] for st in stages.values()), 2),
            "dvc_cpu_s": round(sampler.cpu_seconds("dvc"), 2), "stages": stages}


def measure_n(clips: int, work: Path, code: Path, short_side: int) -> dict[str, Any]:
    project = work / f"p{clips}"
    t0 = time.monotonic()
    workload = make_project(project, clips, code, short_side)
    print(f"[{clips}] project and workload in {time.monotonic() - t0:.1f} s; load {load()}", flush=True)
    result: dict[str, Any] = {"clips": clips, "workload": workload, "load_before": load()}
    wall, out, sampler = run_watched(dvc("repro", *TARGETS), project)
    (project / "repro.log").write_text(out)
    result["repro"] = repro_figures(project, wall, sampler)
    print(f"[{clips}] repro {wall:.1f} s: " + ", ".join(
        f"{s} {st['wall_s']} s ({st['s_per_clip'] * 1e3:.1f} ms/clip, DVC after {st['dvc_after_s']} s)"
        for s, st in result["repro"]["stages"].items()) + f"; load {load()}", flush=True)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "repro", cwd=project)
    result["dvc_status_s"], status = timed(dvc("status", *TARGETS), project)
    result["dvc_status_clean"] = "up to date" in status or not status.strip()
    result["noop_repro_s"], noop = timed(dvc("repro", *TARGETS), project)
    result["noop_repro_ran"] = [line for line in noop.splitlines() if line.startswith("Running stage")]
    result["loader_pass"] = child(project, "loader")
    result["eval_index"] = child(project, "eval-index")
    result["load_after"] = load()
    print(f"[{clips}] status {result['dvc_status_s']:.1f} s, no-op repro {result['noop_repro_s']:.1f} s, "
          f"loader pass {result['loader_pass']['wall_s']} s, eval index {result['eval_index']['wall_s']} s; "
          f"load {load()}", flush=True)
    return result


def child(project: Path, what: str) -> dict[str, Any]:
    """Run ``bench/scale.py --child WHAT PROJECT`` (the project's own code) and watch it."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what, str(project)]
    wall, out, sampler = run_watched(cmd, project, group=lambda cmdline: "child")
    g = sampler.groups["child"]
    figures = json.loads(out.strip().splitlines()[-1])
    return {**figures, "wall_s": round(wall, 2), "cpu_s": round(sampler.cpu_seconds("child"), 2),
            "peak_rss_mb": round(g["peak_rss"] / 2**20, 1), "peak_process_rss_mb": round(g["peak_process_rss"] / 2**20, 1),
            "peak_open_files": g["peak_fds"], "peak_process_open_files": g["peak_process_fds"],
            "peak_processes": g["peak_procs"]}


# --------------------------------------------------------------------------- in the child (the project's code)


def loader_pass() -> dict[str, Any]:
    """The train stage's reads before its job, then one epoch of its training clips."""
    import torch
    from torch.utils.data import DataLoader

    from avsf.data.clip_dataset import collate_clips
    from pipeline.params import load_params
    from pipeline.runs import training_run
    from pipeline.train import clip_sampling, store_dirs, store_identity, train_dataset, train_store

    torch.set_num_threads(1)
    params = load_params("params.yaml")
    run = training_run(params, "kinetics", "avslowfast")
    figures = {}
    t = time.monotonic()
    train_store(run)
    figures["train_store_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    store_identity(*store_dirs(run))
    figures["store_identity_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    dataset = train_dataset(run, clip_sampling(run.params.dataset, run.params.model), sync_negatives=True)
    figures["dataset_s"] = round(time.monotonic() - t, 3)
    torch.manual_seed(0)
    workers = run.params.train.workers
    loader = DataLoader(dataset, batch_size=run.params.train.batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate_clips, drop_last=True, persistent_workers=False)
    t = time.monotonic()
    items = 0
    for batch in loader:
        items += len(batch["label"])
    epoch = time.monotonic() - t
    figures.update(items=items, epoch_s=round(epoch, 2), s_per_item=epoch / max(items, 1), workers=workers,
                   max_open_shards=run.params.dataset.max_open_shards, train_clips=len(dataset))
    return figures


def eval_index() -> dict[str, Any]:
    """What the Kinetics evaluation builds around its predictions: the truth from the
    manifests, the test views' dataset, scores by id, the official report."""
    import numpy as np

    from avsf.data.clip_dataset import ClipDataset
    from avsf.evaluate.classification import classification_report
    from pipeline.datasets.kinetics import class_groups
    from pipeline.params import load_params
    from pipeline.runs import training_run
    from pipeline.train import clip_sampling, store_dirs

    params = load_params("params.yaml")
    run = training_run(params, "kinetics", "avslowfast")
    ds = run.dataset
    figures = {}
    t = time.monotonic()
    truth = ds.evaluation_truth()
    figures["truth_s"] = round(time.monotonic() - t, 3)
    frames, logmel = store_dirs(run)
    t = time.monotonic()
    clips = ClipDataset(frames, logmel, ds.store_split(ds.test_split), "test",
                        ds.test_sampling(clip_sampling(run.params.dataset, run.params.model)),
                        labels=ds.label_source(ds.test_split), max_open_shards=run.params.dataset.max_open_shards)
    figures["views_dataset_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    ids = [e.clip_id for e in clips.entries]
    rng = np.random.default_rng(0)
    scores = {clip: rng.dirichlet(np.ones(len(truth["classes"]))) for clip in ids if clip in truth["labels"]}
    figures["scores_by_id_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    report_ = classification_report(truth["labels"], scores, truth["classes"], class_groups(truth["classes"]))
    figures["report_s"] = round(time.monotonic() - t, 3)
    figures.update(videos=len(truth["labels"]), views=len(clips), available=len(scores),
                   top1=round(report_.to_dict()["official"]["top1"], 4))
    return figures


# --------------------------------------------------------------------------- DVC's settings


def inventory_writing() -> dict[str, Any]:
    """The stages' own cost of their inventories, on the project's folders as they are: the
    clips' (each clip's record read, the records hashed) and each store's (the shards' metas,
    which the stages read anyway, then the rows)."""
    from pipeline.download import _clip_digest
    from pipeline.inventory import INVENTORY_NAME, read_inventory, write_inventory, write_shard_inventory
    from avsf.data.store import read_meta

    out: dict[str, Any] = {}
    clips = Path("data/kinetics/clips")
    started = time.perf_counter()
    write_inventory(clips, _clip_digest)
    rows = len(read_inventory(clips))
    out["clips"] = {"files": rows, "s": round(time.perf_counter() - started, 3),
                    "bytes": (clips / INVENTORY_NAME).stat().st_size}
    out["clips"]["us_per_file"] = round(out["clips"]["s"] / rows * 1e6, 1)
    for store in ("frames", "logmel"):
        directory = Path("data/kinetics/store") / store
        paths = sorted(str(p) for p in directory.glob("shard-*.h5"))
        started = time.perf_counter()
        metas = [read_meta(p) for p in paths]
        read = time.perf_counter()
        write_shard_inventory(directory, paths, metas)
        out[store] = {"shards": len(paths), "metas_s": round(read - started, 3),
                      "s": round(time.perf_counter() - read, 4), "bytes": (directory / INVENTORY_NAME).stat().st_size}
    return out


def as_folders(dvc_yaml: str, cached: bool) -> str:
    """dvc.yaml with the data stages' big outputs (clips, frames, logmel) as folders, cached or
    not, and their consumers depending on the folders: the project's settings before inventories."""
    for key in BIG_OUTPUTS.values():
        out = rf"(\n( +)- \$\{{layout\.data\}}/\$\{{key\}}/\$\{{DATA\.{key}\}})/\$\{{DATA\.inventory\}}:\n +cache: false[^\n]*(?:\n +persist: true[^\n]*)?"
        folder = r"\1:\n\2    persist: true" + ("" if cached else r"\n\2    cache: false")
        dvc_yaml, n = re.subn(out, folder, dvc_yaml)
        assert n == 1, key
        dvc_yaml = dvc_yaml.replace(f"${{DATA.{key}}}/${{DATA.inventory}}\n", f"${{DATA.{key}}}\n")
    return dvc_yaml


def dvc_variant(project: Path, variant: str) -> dict[str, Any]:
    """DVC's cost under ``variant`` (copy | hardlink | uncached | inventory) on the outputs already built:
    cache and dvc.lock removed, the files given fresh inodes, the three stages reproduced (each
    finds its work done), disk use, then a forced rerun of decode."""
    dvc_yaml = project / "dvc.yaml"
    original = project / "dvc.yaml.orig"
    if not original.exists():
        shutil.copy2(dvc_yaml, original)
    # the big outputs as folders, cached (copy, hardlink) or not (uncached), or as the project's dvc.yaml has them
    dvc_yaml.write_text(original.read_text() if variant == "inventory" else
                        as_folders(original.read_text(), cached=variant != "uncached"))
    if "type" in (project / ".dvc/config").read_text():
        sh(*dvc("config", "--unset", "cache.type"), cwd=project)
    if variant == "hardlink":
        sh(*dvc("config", "cache.type", "hardlink,symlink"), cwd=project)
    for path in (project / ".dvc/cache", project / ".dvc/tmp", project / "dvc.lock"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    # Every file gets a fresh inode and mtime, as a first run's outputs have: DVC's state
    # (hashes by inode and mtime) is gone anyway, and the links of an earlier variant are broken.
    for out in ("data/kinetics/clips", "data/kinetics/store/frames", "data/kinetics/store/logmel"):
        for dirpath, _, names in os.walk(project / out):
            for name in names:
                path = os.path.join(dirpath, name)
                tmp = path + ".bench-copy"
                shutil.copyfile(path, tmp)
                os.replace(tmp, path)
    wall, out, sampler = run_watched(dvc("repro", *TARGETS), project)
    (project / f"repro-{variant}.log").write_text(out)
    figures = repro_figures(project, wall, sampler)
    data, cache = project / "data", project / ".dvc/cache"
    figures.update(variant=variant, data_bytes=disk_bytes(data), cache_bytes=disk_bytes(cache),
                   data_and_cache_bytes=disk_bytes(data, cache))
    figures["status_s"], _ = timed(dvc("status", *TARGETS), project)
    wall, out, sampler = run_watched(dvc("repro", "-f", "-s", "decode@kinetics"), project)
    (project / f"rerun-{variant}.log").write_text(out)
    g = sampler.groups["stage:decode"]
    figures["forced_decode_rerun"] = {"wall_s": round(wall, 2), "stage_wall_s": round(g["last"] - g["first"], 2),
                                      "dvc_before_s": round(g["first"] - sampler.started, 2),
                                      "dvc_after_s": round(sampler.started + wall - g["last"], 2)}
    figures["data_and_cache_bytes_after_rerun"] = disk_bytes(data, cache)
    print(f"[{variant}] repro {figures['repro_wall_s']} s, DVC {figures['dvc_s']} s, data {figures['data_bytes']/2**20:.0f}"
          f" MiB, data+cache {figures['data_and_cache_bytes']/2**20:.0f} MiB; forced decode rerun: "
          f"{figures['forced_decode_rerun']}; load {load()}", flush=True)
    return figures


# --------------------------------------------------------------------------- the report


def growth(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per stage (and the loader pass, the eval index): seconds per clip at the largest N
    over that at the smallest."""
    first, last = results[0], results[-1]
    out = {s: last["repro"]["stages"][s]["cpu_s_per_clip"] / first["repro"]["stages"][s]["cpu_s_per_clip"]
           for s in STAGES}
    out["loader_pass"] = last["loader_pass"]["s_per_item"] / first["loader_pass"]["s_per_item"]
    out["eval_index"] = (last["eval_index"]["cpu_s"] / last["clips"]) / (first["eval_index"]["cpu_s"] / first["clips"])
    out["dvc_status"] = (last["dvc_status_s"] / last["clips"]) / (first["dvc_status_s"] / first["clips"])
    out["noop_repro"] = (last["noop_repro_s"] / last["clips"]) / (first["noop_repro_s"] / first["clips"])
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/avsf-scale"))
    parser.add_argument("--short-side", type=int, default=32)
    parser.add_argument("--dvc-variants", nargs="*", default=["copy", "hardlink", "uncached", "inventory"],
                        choices=["copy", "hardlink", "uncached", "inventory"])
    parser.add_argument("--project", type=Path, help="measure only the variants, on this project (kept by an "
                        "earlier run), its code refreshed from --code")
    parser.add_argument("--baseline", type=Path, default=REPO / "reports/bench/scale_exp.json",
                        help="with --project: the report of the run that built it (its stages' walls)")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code and params are copied")
    parser.add_argument("--name", help="the report's name: reports/bench/<name>.json (default scale, or "
                        "scale_dvc with --project)")
    parser.add_argument("--keep", action="store_true", help="keep the projects under --work")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, project = args.child
        os.chdir(project)
        sys.path.insert(0, project)  # the project's own copy of the code
        print(json.dumps({"loader": loader_pass, "eval-index": eval_index, "inventory": inventory_writing}[what]()))
        return

    if args.project:
        variants_only(args)
        return
    args.name = args.name or "scale"
    results = []
    for clips in sorted(args.clips):
        results.append(measure_n(clips, args.work, args.code.resolve(), args.short_side))
        write(args, results, [])
    variants = [dvc_variant(args.work / f"p{results[-1]['clips']}", v) for v in args.dvc_variants]
    write(args, results, variants)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


def variants_only(args) -> None:
    """The DVC variants on a kept project, its code (dvc.yaml, stages, pipeline, avsf) replaced
    by ``--code``'s and committed; its data as it is."""
    from bench_report import bench_path, git_commit, report

    project = args.project.resolve()
    copy_code(args.code.resolve(), project)
    (project / "dvc.yaml.orig").unlink(missing_ok=True)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "code", "--allow-empty", cwd=project)
    clips = json.loads((project / "reports/kinetics/metrics/download.json").read_text())["total_rows"]
    # each stage's wall when it did its work: the baseline of the run that built the project
    baseline = json.loads(args.baseline.read_text())
    assert baseline["clips"] == clips, f"{args.baseline} is of {baseline['clips']} clips, the project of {clips}"
    walls = {s: baseline["baseline"]["stages"][s]["wall_s"] for s in STAGES}
    variants = [dvc_variant(project, v) for v in args.dvc_variants]
    for v in variants:  # DVC's time after each stage over that stage's work: the overhead the goal bounds
        v["dvc_fraction"] = {s: round(v["stages"][s]["dvc_after_s"] / walls[s], 6) for s in STAGES}
    chosen = next((v for v in variants if v["variant"] == "inventory"), None)
    report(bench_path(args.name or "scale_dvc"), "dvc_after_stage_over_stage_work_largest",
           max(chosen["dvc_fraction"].values()) if chosen else None, "ratio", GOAL_DVC, higher_is_better=False,
           clips=clips, stage_wall_s=walls, baseline=str(args.baseline), baseline_commit=baseline.get("commit"),
           code=str(args.code), code_commit=git_commit(args.code), project=str(project), dvc_variants=variants,
           inventory_writing=child(project, "inventory"),
           note="dvc status after each variant is timed with DVC's state just filled (kept), not lost")


def write(args, results: list[dict[str, Any]], variants: list[dict[str, Any]]) -> None:
    from bench_report import bench_path, report

    grown = growth(results) if len(results) > 1 else {}
    worst = max(grown.values()) if grown else None
    report(bench_path(args.name), "per_clip_growth_largest_over_smallest_n", worst, "ratio", GOAL_GROWTH,
           higher_is_better=False, growth=grown, clips=[r["clips"] for r in results], short_side=args.short_side,
           code=str(args.code), results=results, dvc_variants=variants, dvc_overhead_goal=GOAL_DVC,
           note="2 s clips of 64x48 and 96x72 sources at decode.short_side 32: the per-clip work is small, "
                "everything around it (rows, files, shards, classes, DVC) has Kinetics' shape")


if __name__ == "__main__":
    main()
