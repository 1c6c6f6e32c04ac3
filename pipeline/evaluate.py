"""Stage ``evaluate@<dataset>-<member>``: a trained model's test, scored as the dataset's
official evaluation scores it (each dataset's module: pipeline.datasets).

    final.pyth (EPIC's separate models: verb/ and noun/) ──build + load──> network (eval)
    store, the dataset's label source of each evaluation split ──test views (the dataset's
        test_sampling: dataset.test_clips x test_crops, AVA's whole frame)──> Dataset.predict
        (in the job: pooled scores per sample, or AVA's per-box scores)
    ──Dataset.score, against Dataset.evaluation_truth──>
        reports/<dataset>/models/<member>/metrics.json   the official figures
                                          per_class.csv  class, value, count (a DVC bar plot)
                                          results/       the official results files

A rerun with the same checkpoints, store and settings re-attaches to a running job.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from avsf.data.clip_dataset import ClipDataset
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.io.machine import joined, machine_description
from avsf.models import build_model
from avsf.models.serialize import config_from_dict
from avsf.train import checkpoint as ckpt
from pipeline.cli import configure_logging
from pipeline.launch import StageFailed, job_env, run_job, set_job_threads
from pipeline.layout import METRICS_NAME, RUN_SUMMARY, Layout
from pipeline.params import EvaluateParams, Params
from pipeline.runs import TrainRun, target_runs, training_run
from pipeline.train import clip_sampling, resolve_device, store_dirs

log = logging.getLogger("avsf.evaluate")

STAGE = "evaluate"


def run_evaluate(params: Params, dataset: str | None = None, member: str | None = None,
                 recipe: str | None = None) -> None:
    """Test a trained model (its final.pyth) on the dataset's test split as the dataset's
    official evaluation does: Kinetics' multi-view top-1 / top-5 over every manifest video
    (a missing one is a miss), EPIC-Kitchens' verb / noun / action, Charades' mAP, AVA's
    frame-mAP. Writes metrics.json, per_class.csv and the official results files (results/)
    to reports/<dataset>/models/<member>. With a recipe (params.yaml's or --recipe), its test
    views and sampling."""
    run = training_run(params, dataset, member, recipe_name=recipe)
    ds = run.dataset
    checkpoints = {r.target: r.paths.out_dir / ckpt.FINAL for r in target_runs(run)}
    for path in checkpoints.values():
        if not path.is_file():
            raise StageFailed(f"evaluate: no trained model at {path}; run stage {run.stage} first")
    truth = ds.evaluation_truth()
    device = resolve_device(run.params, STAGE)
    fingerprint = digest(sorted((str(t), file_digest(p)) for t, p in checkpoints.items()),
                         run.params.dataset.model_dump(), params.evaluate.model_dump(), ds.files_digest(), ds.record(),
                         device, params.launch.cpu_isa)
    started = time.monotonic()
    out = run_job(STAGE, EvaluationJob(run, checkpoints, params.evaluate), run.params.launch,
                  Path(run.params.launch.log_dir) / STAGE / "running.json", fingerprint)
    out_dir = Layout.of(params.layout).model(ds.name, run.name)
    metrics, line = ds.score(run, out, truth, out_dir)
    # (strings: `dvc metrics diff` leaves them out)
    machines = {"machine": out.get("machine"), "trained_on": trained_on(checkpoints.values())}
    write_json(out_dir / METRICS_NAME, {**metrics, **{k: v for k, v in machines.items() if v}})
    log.info("evaluate: %s; %.1f s", line, time.monotonic() - started)


class EvaluationJob:
    """The job's function: every evaluation split's test views through every model of the
    run (one process: more tasks per job would only repeat it), on the device params give it."""

    stage = STAGE  # whose launch resources (and so device) the job runs with

    def __init__(self, run: TrainRun, checkpoints: dict[str | None, Path], settings: EvaluateParams):
        self.run, self.checkpoints, self.settings = run, checkpoints, settings

    def __call__(self) -> dict[str, Any]:
        configure_logging()
        if job_env()[1] != 0:
            return {}
        device = job_device(self.run.params, self.settings, self.stage)
        run, ds, p = self.run, self.run.dataset, self.run.params
        frames, logmel_dir = store_dirs(run)
        out: dict[str, Any] = {"splits": {split: {} for split in ds.evaluation_splits()}, "gflops_per_view": 0.0,
                               "params_m": 0.0}
        for target, path in self.checkpoints.items():
            model, cfg, state = load_network(path, device)
            # (temporal_sampling auto: the frame picks the model was trained on)
            sampling = ds.test_sampling(clip_sampling(p.dataset, p.model, weights=state))
            logmel = logmel_dir if cfg.audio is not None else None
            for split in out["splits"]:
                clips = ClipDataset(frames, logmel, ds.store_split(split), "test", sampling,
                                    labels=ds.label_source(split), max_open_shards=p.dataset.max_open_shards)
                out["splits"][split][target] = ds.predict(model, cfg, clips, device, self.settings)
            view = ds.view_cost(cfg, sampling)  # (separate models: both run on every view)
            out["gflops_per_view"] += view.gmacs
            out["params_m"] += view.mparams
            out.update(model=cfg.name, checkpoint_epoch=int(state.get("epoch", -1)) + 1, test_crop=sampling.test_crop,
                       test_scale=sampling.test_scale, views_per_video=sampling.test_clips * sampling.test_crops)
        out["gflops_per_view"], out["params_m"] = round(out["gflops_per_view"], 4), round(out["params_m"], 4)
        out["machine"] = machine_description(device)
        return out


def trained_on(checkpoints) -> str | None:
    """The machine(s) that trained ``checkpoints`` (our final.pyth files), from the run's
    summary beside each; None where none records one (an official checkpoint, an older run)."""
    machines = []
    for path in checkpoints:
        try:
            machines.append(json.loads((Path(path).parent / RUN_SUMMARY).read_text()).get("machine"))
        except (OSError, ValueError, AttributeError):
            pass
    return joined(machines)


def job_device(params: Params, settings: EvaluateParams, stage: str = STAGE) -> torch.device:
    """An evaluation job's device (from params: resolve_device), its threads set beside
    ``settings.workers`` loader processes."""
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or (os.cpu_count() or 1)
    set_job_threads(cpus, reserved=settings.workers)
    device_type, _ = resolve_device(params, stage)
    if device_type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{stage}: the run is on CUDA (train.device, launch gpus_per_node) but this job sees no GPU")
    return torch.device("cuda" if device_type == "cuda" else "cpu")


def load_network(path: Path, device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(network, its config, the checkpoint) of one of our training checkpoints, on ``device``."""
    state = ckpt.load_training_checkpoint(path)
    cfg = config_from_dict(state["model_config"])
    model = build_model(cfg)
    model.load_state_dict(state["model_state"])
    return model.to(device), cfg, state
