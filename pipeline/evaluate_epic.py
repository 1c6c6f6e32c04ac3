"""Stage ``evaluate_epic@<member>``: the fine-tuned model scored as EPIC-Kitchens-100's
official evaluation scores it.

    final.pyth (joint: verb + noun heads; separate: verb/final.pyth and noun/final.pyth)
    store, EPIC_100_<split>.csv ──EpicSegments: one test view per narration (a centre crop,
        dataset.test_clips x test_crops, logits averaged)──> verb and noun logits
    ──epic_metrics (every narration of the split: one whose video failed is a miss)──>
        metrics.json     verb / noun / action top-1 and top-5, top-1 on the tail classes
                         and the unseen participants; the demo's nouns by cue (appearance,
                         sound); GFLOPs x views
        submission.pkl   the official results file: narration_id, verb_output [N, V] and
                         noun_output [N, Nn] logits as numpy arrays, every narration
        predictions.csv  one row per narration
        noun_accuracy.csv  top-1 per noun (a DVC bar plot)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsf.data.clip_dataset import ClipDataset
from avsf.data.epic import read_epic_annotations, read_id_list
from avsf.evaluate.epic import epic_metrics, write_epic_submission
from avsf.evaluate.views import predict_views
from avsf.io.atomic import write_json
from avsf.io.digest import digest, file_digest
from avsf.models.flops import count_cost
from avsf.train import checkpoint as ckpt
from pipeline.datasets import EPIC_TAIL_NOUNS, EPIC_TAIL_VERBS, dataset_spec, epic_targets, epic_unseen_name
from pipeline.evaluate import METRICS_NAME, PREDICTIONS_NAME, EvaluationJob, load_network, trained_checkpoint, write_csv
from pipeline.launch import StageFailed, run_job
from pipeline.params import Params
from pipeline.train import clip_sampling, resolve_device

log = logging.getLogger("avsf.evaluate")

STAGE = "evaluate"
SUBMISSION_NAME, NOUN_ACCURACY_NAME = "submission.pkl", "noun_accuracy.csv"
KINDS = ("verb", "noun", "action")


def checkpoints(params: Params) -> dict[str | None, Path]:
    """The final checkpoint of each model of the run: {None: joint} or {verb: .., noun: ..}."""
    out_dir = Path(params.train.out_dir)
    return {t: (out_dir if t is None else out_dir / t) / ckpt.FINAL for t in epic_targets(params)}


def noun_cues(nouns: list[str]) -> dict[str, str]:
    """Noun -> the cue that tells it apart, when the nouns are the demo's (else none)."""
    from avsf.data.demo.epic import epic_noun_cues

    cues = epic_noun_cues()
    return cues if nouns and all(n in cues for n in nouns) else {}


def run_evaluate_epic(params: Params) -> None:
    """Score the fine-tuned model (train.out_dir/final.pyth, or verb/ and noun/ for
    epic.heads separate) on every narration of epic.test_split as EPIC-Kitchens-100's
    official code does: verb, noun and action (top epic.action_top_k verbs x nouns from the
    logits) top-1 / top-5, top-1 on the tail classes and on the unseen participants. A
    narration whose video failed to download or decode is a miss.

    Writes to evaluate.out_dir: metrics.json, submission.pkl (the official results file,
    logits as numpy arrays, a row for every narration), predictions.csv and noun_accuracy.csv.
    """
    spec = dataset_spec(params)
    files = {target: trained_checkpoint(path, "epic") for target, path in checkpoints(params).items()}
    split = params.evaluate.split
    try:
        narrations = read_epic_annotations(spec.annotation_file(split))
    except (OSError, ValueError) as exc:
        raise StageFailed(f"evaluate: {exc}") from None
    root = Path(spec.annotations)
    unseen_path = root / epic_unseen_name(split)
    lists = {"tail_verbs": [int(v) for v in read_id_list(root / EPIC_TAIL_VERBS)],
             "tail_nouns": [int(v) for v in read_id_list(root / EPIC_TAIL_NOUNS)],
             "unseen": read_id_list(unseen_path) if unseen_path.is_file() else []}
    fingerprint = digest({t: file_digest(p) for t, p in files.items()}.__repr__(), params.dataset.model_dump(),
                         params.evaluate.model_dump(), spec.digest(), resolve_device(params, STAGE))
    started = time.monotonic()
    out = run_job(STAGE, EpicEvaluateJob(params), params.launch,
                  Path(params.launch.log_dir) / STAGE / "running.json", fingerprint)
    classes = spec.class_names()
    verb_logits = np.zeros((len(narrations), len(classes["verb"])), np.float32)
    noun_logits = np.zeros((len(narrations), len(classes["noun"])), np.float32)
    predicted = np.zeros(len(narrations), bool)
    for segment, verb, noun in zip(out["segments"], out["verb"], out["noun"]):
        verb_logits[segment], noun_logits[segment], predicted[segment] = verb, noun, True
    report = epic_metrics(
        verb_logits, noun_logits, np.array([n.verb_class for n in narrations]),
        np.array([n.noun_class for n in narrations]), [n.participant_id for n in narrations],
        lists["tail_verbs"], lists["tail_nouns"], lists["unseen"], predicted=predicted,
        top_k=params.epic.action_top_k)
    o = report["official"]
    write_outputs(params, out, report, narrations, verb_logits, noun_logits, predicted, classes)
    log.info("evaluate: %s on %d narrations (%d without a prediction): verb %s, noun %s, action %s %% top-1 "
             "(tail %s / %s / %s; unseen %s / %s / %s); %.1f s", out["model"], len(narrations),
             int((~predicted).sum()), *(o[f"{k}_top1"] for k in KINDS), *(o["tail"][f"{k}_top1"] for k in KINDS),
             *(o["unseen"][f"{k}_top1"] for k in KINDS), time.monotonic() - started)


class EpicEvaluateJob(EvaluationJob):
    """The job's function: each model's test views of every stored narration."""

    def run(self, device: torch.device) -> dict[str, Any]:
        p, e = self.params, self.params.evaluate
        spec = dataset_spec(p)
        logits: dict[str, np.ndarray] = {}
        segments, gmacs, mparams, name, failures = None, 0.0, 0.0, "", []
        for target, path in checkpoints(p).items():
            model, cfg, state = load_network(path, device)
            sampling = clip_sampling(p.dataset, p.model, weights=state)  # auto: the picks the model trained on
            logmel = p.spectrogram.out_dir if cfg.audio is not None else None
            dataset = ClipDataset(p.decode.out_dir, logmel, e.split, "test", sampling, labels=spec.label_source(e.split),
                                  max_open_shards=p.dataset.max_open_shards)
            result = predict_views(model, cfg, dataset, batch_size=e.batch_size, device=device, workers=e.workers,
                                   progress=True, pool="logit_mean")
            results = result if target is None else {target: result}
            kept = next(iter(results.values())).predicted
            segments = [s.target["segment"] for s, k in zip(dataset.samples, kept) if k]
            for key, r in results.items():
                logits[key] = r.scores[kept].astype(np.float32)
            failures += next(iter(results.values())).failures
            view = count_cost(cfg, sampling.test_crop)  # separate models: both run on every view
            gmacs, mparams, name = gmacs + view.gmacs, mparams + view.mparams, cfg.name
        return {"model": name, "segments": segments, "verb": logits["verb"].tolist(), "noun": logits["noun"].tolist(),
                "views_per_segment": sampling.test_clips * sampling.test_crops, "failed_views": len(failures),
                "failures": failures, "gflops_per_view": round(gmacs, 4), "params_m": round(mparams, 4),
                "test_crop": sampling.test_crop}


def write_outputs(params: Params, out: dict[str, Any], report: dict[str, Any], narrations: list, verb_logits: np.ndarray,
                  noun_logits: np.ndarray, predicted: np.ndarray, classes: dict[str, list[str]]) -> None:
    """metrics.json, submission.pkl, predictions.csv and noun_accuracy.csv in evaluate.out_dir."""
    out_dir = Path(params.evaluate.out_dir)
    cues = noun_cues(classes["noun"])
    verb_top, noun_top = verb_logits.argmax(1), noun_logits.argmax(1)
    nouns = np.array([n.noun_class for n in narrations])
    noun_hit = (noun_top == nouns) & predicted
    groups: dict[str, dict[str, float]] = {}
    for cue in dict.fromkeys(cues.values()):
        members = np.array([cues.get(classes["noun"][c]) == cue for c in nouns])
        if members.any():
            groups[cue] = {"noun_top1": round(100 * float(noun_hit[members].mean()), 4), "segments": int(members.sum())}
    metrics = {
        "model": out["model"], "heads": params.epic.heads, "split": params.evaluate.split,
        "narrations": len(narrations), "missing": int((~predicted).sum()),
        "missing_ids": [n.narration_id for n, k in zip(narrations, predicted) if not k],
        # The official figures (every narration; one without a prediction is a miss) at the top
        # level, in %, as the official script prints them; the figures over the predicted ones beside.
        **{f"{k}_top{i}": report["official"][f"{k}_top{i}"] for k in KINDS for i in (1, 5)},
        "tail": report["official"]["tail"], "unseen": report["official"]["unseen"],
        "official": report["official"], "available": report["available"], "noun_groups": groups,
        "views_per_segment": out["views_per_segment"], "test_crop": out["test_crop"],
        "gflops_per_view": out["gflops_per_view"],
        "gflops_x_views": round(out["gflops_per_view"] * out["views_per_segment"], 4), "params_m": out["params_m"],
        "failed_views": out["failed_views"],
    }
    write_json(out_dir / METRICS_NAME, metrics)
    # Every narration gets a row, as the official script scores only what it is given; one
    # without a prediction has zero logits (our metrics count it as a miss).
    write_epic_submission(out_dir / SUBMISSION_NAME, [n.narration_id for n in narrations], verb_logits, noun_logits)
    rows = [{"narration_id": n.narration_id, "participant_id": n.participant_id, "verb": classes["verb"][n.verb_class],
             "noun": classes["noun"][n.noun_class],
             "predicted_verb": classes["verb"][v] if k else "(no prediction)",
             "predicted_noun": classes["noun"][u] if k else "(no prediction)",
             "noun_cue": cues.get(classes["noun"][n.noun_class], "")}
            for n, v, u, k in zip(narrations, verb_top, noun_top, predicted)]
    write_csv(out_dir / PREDICTIONS_NAME, rows, tuple(rows[0]) if rows else ("narration_id",))
    per_noun = [{"noun": name, "top1": round(100 * float(noun_hit[nouns == c].mean()), 2), "segments": int((nouns == c).sum())}
                for c, name in enumerate(classes["noun"]) if (nouns == c).any()]
    write_csv(out_dir / NOUN_ACCURACY_NAME, per_noun, ("noun", "top1", "segments"))
