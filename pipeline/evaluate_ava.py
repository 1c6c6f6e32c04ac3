"""Stage ``evaluate_ava@<member>``: the fine-tuned detector scored with AVA's official frame-mAP.

    final.pyth, store, ava_<split>_predicted_boxes.csv (score >= ava.detection_score)
        ──one clip per keyframe, centred, fully convolutional on the short side at test_scale──>
        per-box sigmoid scores of every trained class
    ──> detections.csv  the official results format (video_id,timestamp,x1,y1,x2,y2,action_id,score)
    ──frame_map (avsf.evaluate.ava: the official semantics, the evaluated classes, excluded
      keyframes, top 50 per keyframe)──> metrics.json  mAP, AP per class and per cue, GFLOPs
                                         class_ap.csv  AP per class by frequency (a DVC plot)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsf.data.ava import AvaDetection, read_ava_ground_truth, read_excluded_timestamps, write_ava_detections
from avsf.data.clip_dataset import ClipDataset, collate_clips
from avsf.evaluate.ava import frame_map, per_class_ap_table, write_per_class_ap_csv
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.models.flops import count_cost
from avsf.train import checkpoint as ckpt
from avsf.train.engine import model_inputs
from avsf.train.tasks import Detection
from pipeline.datasets import dataset_spec
from pipeline.evaluate import METRICS_NAME, EvaluationJob, load_network, trained_checkpoint
from pipeline.launch import StageFailed, run_job
from pipeline.params import Params
from pipeline.train import clip_sampling, resolve_device

log = logging.getLogger("avsf.evaluate")

STAGE = "evaluate"
DETECTIONS_NAME, CLASS_AP_NAME = "detections.csv", "class_ap.csv"


def run_evaluate_ava(params: Params) -> None:
    """Score the fine-tuned detector (train.out_dir/final.pyth) on ava.test_split: one clip
    per keyframe centred on it, the whole frame at dataset.test_scale, every detected person
    box scoring at least ava.detection_score classified (per-class sigmoid). Writes
    detections.csv (the official results format), metrics.json (the official frame-mAP over
    the evaluated classes, with excluded keyframes; AP per class and per cue; GFLOPs) and
    class_ap.csv (a DVC plot, classes by frequency) to evaluate.out_dir."""
    spec = dataset_spec(params)
    checkpoint = trained_checkpoint(Path(params.train.out_dir) / ckpt.FINAL, "ava")
    split = params.evaluate.split
    try:
        truth, keyframes = read_ava_ground_truth(spec.annotation_file(split))
        excluded_path = spec.excluded_file(split)
        excluded = read_excluded_timestamps(excluded_path) if excluded_path.is_file() else set()
        evaluated = spec.evaluated_classes()
    except (OSError, ValueError) as exc:
        raise StageFailed(f"evaluate: {exc}") from None
    fingerprint = digest(file_digest(checkpoint), params.dataset.model_dump(), params.evaluate.model_dump(),
                         spec.digest(), spec.record(), resolve_device(params, STAGE))
    started = time.monotonic()
    out = run_job(STAGE, AvaEvaluateJob(params), params.launch, Path(params.launch.log_dir) / STAGE / "running.json",
                  fingerprint)
    detections = [AvaDetection(v, int(ts), tuple(box), int(a), float(s)) for v, ts, box, a, s in out["detections"]]
    result = frame_map(truth, keyframes, detections, evaluated, excluded)
    names = spec.action_names()
    table = per_class_ap_table(result, names)
    out_dir = Path(params.evaluate.out_dir)
    write_ava_detections(out_dir / DETECTIONS_NAME, detections)
    write_per_class_ap_csv(out_dir / CLASS_AP_NAME, table)
    groups = spec.action_groups()
    by_group: dict[str, list[float]] = {}
    for row in table:
        by_group.setdefault(groups.get(row.name, "other"), []).append(row.ap)
    metrics = {
        "model": out["model"], "split": split, "map": result.mean_ap,
        "class_ap": {names.get(c, str(c)): ap for c, ap in result.class_ap.items()},
        "class_count": {names.get(c, str(c)): n for c, n in result.class_count.items()},
        "group_map": {g: float(np.mean(aps)) for g, aps in sorted(by_group.items())},
        "evaluated_classes": len(evaluated), "keyframes": len(keyframes - excluded), "excluded": len(excluded),
        "keyframes_predicted": out["keyframes"], "boxes": out["boxes"], "failed_clips": out["failed"],
        "gflops_per_view": out["gflops_per_view"], "params_m": out["params_m"], "test_scale": out["test_scale"],
    }
    write_json(out_dir / METRICS_NAME, metrics)
    log.info("evaluate: %s on %d keyframes (%d excluded), %d detected boxes: frame-mAP %s over %d classes; %.1f s",
             out["model"], metrics["keyframes"], len(excluded), out["boxes"],
             "-" if result.mean_ap is None else f"{result.mean_ap:.3f}", len(evaluated), time.monotonic() - started)


class AvaEvaluateJob(EvaluationJob):
    """The job's function: every test keyframe's clip through the detector."""

    def run(self, device: torch.device) -> dict[str, Any]:
        p, e = self.params, self.params.evaluate
        spec = dataset_spec(p)
        model, cfg, state = load_network(Path(p.train.out_dir) / ckpt.FINAL, device)
        model.eval()
        sampling = spec.val_sampling(clip_sampling(p.dataset, p.model, weights=state))  # auto: as trained
        logmel = p.spectrogram.out_dir if cfg.audio is not None else None
        labels = spec.label_source(e.split)
        dataset = ClipDataset(p.decode.out_dir, logmel, e.split, "test", sampling, labels=labels,
                              max_open_shards=p.dataset.max_open_shards)
        loader = DataLoader(dataset, batch_size=e.batch_size, num_workers=e.workers, collate_fn=collate_clips)
        task, classes = Detection(), spec.train_classes()
        rows: list[tuple[str, int, list[float], int, float]] = []
        failed = 0
        with torch.no_grad():
            for batch in tqdm(loader, desc="keyframes", unit="batch"):
                failed += len(batch["load_failures"])
                boxes = task.boxes(batch, device)
                if boxes.shape[0] == 0:
                    continue
                scores = torch.sigmoid(model(model_inputs(cfg, batch, device, channels_last=False), boxes=boxes).float())
                for k in range(boxes.shape[0]):
                    item = int(boxes[k, 0])
                    video, ts = batch["video_id"][item], int(batch["timestamp"][item])
                    box = [round(float(x), 4) for x in batch["box_normalised"][k]]
                    rows += [(video, ts, box, classes[c], round(float(scores[k, c]), 6)) for c in range(len(classes))]
        side = sampling.test_scale  # (counted on a square view of the short side, one box over it)
        view = count_cost(cfg, side, boxes=torch.tensor([[0.0, 0.0, 0.0, side, side]], device="meta"))
        return {"model": cfg.name, "detections": rows, "keyframes": len(dataset), "failed": failed,
                "boxes": len(rows) // max(len(classes), 1), "gflops_per_view": round(view.gmacs, 4),
                "params_m": round(view.mparams, 4), "test_scale": sampling.test_scale}
