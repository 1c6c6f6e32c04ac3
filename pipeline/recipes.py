"""The papers' configurations by name: what each paper fixes for one model on one dataset.

A recipe is chosen where a run is named in params.yaml (README "Recipes"):

    recipes.<dataset>.<member>: <name>    train@<member> (Kinetics), finetune@<dataset>-<member>
    recipes.ssl.<setting>: <name>         pretrain@<setting>
    recipes.probe: <name>                 probe@<backbone>, probe_reference@<backbone>

or on a direct stage run (``python stages/train.py --member avslowfast --recipe <name>``).
It sets what the paper fixes (model, sampling, input sizes, optimiser, schedule, length in the
paper's unit, dropout, test views, the weights it starts from) on top of the sections, and
leaves the user's own choices alone (paths, cluster shape, the global batch: learning rates
scale linearly from the recipe's reference batch to train.batch_size). Each recipe carries the
paper's figures: results (table and row) and multiply-adds x views.

    python -m pipeline.recipes            the list: paper figure, GFLOPs x views, params
    python -m pipeline.recipes NAME       one recipe as params.yaml holds it (to copy, change, and
                                          use with the recipe's name set back to null)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import yaml


@dataclass(frozen=True)
class PaperResult:
    """One figure the paper prints for the recipe's model: ``metric`` of ``value`` in ``source``."""

    metric: str  # top-1, mAP, verb top-1, UCF101 top-1 ...
    value: float
    source: str  # paper, table and row
    key: str = ""  # where ours is in the run's metrics.json (a dotted path)
    percent: bool = False  # ours is stored in percent (EPIC's official scoring), not as a fraction


@dataclass(frozen=True)
class Recipe:
    """One paper configuration. ``model``, ``sampling`` and ``train`` are values of params.yaml's
    model, dataset and train sections; ``section`` of the run's own section (a dataset's keys,
    e.g. EPIC's heads and per-target learning rates; ``ssl.probe``'s for a probe recipe)."""

    name: str
    runs_on: str  # kinetics | epic | epic55 | charades | ava | ssl (pretraining) | probe
    title: str
    model: Mapping[str, Any] = field(default_factory=dict)
    sampling: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    section: Mapping[str, Any] = field(default_factory=dict)
    pretexts: tuple[str, ...] = ()  # ssl: the pretexts a setting must have
    results: tuple[PaperResult, ...] = ()
    gmacs: float | None = None  # the paper's multiply-adds per view ("GFLOPs")
    views: int | None = None  # test views per video (clips x crops)
    view_size: tuple[int, int] = (256, 256)  # the view the paper counts (AVA: 256 x 320, fully convolutional)
    mparams: float | None = None  # the paper's parameters (M)
    starts_from: str | None = None  # the recipe whose weights it starts from (or the weights, said in words)
    notes: tuple[str, ...] = ()

    @property
    def arch(self) -> str | None:
        return self.model.get("arch")

    def changes(self) -> dict[str, Any]:
        """The recipe as params.yaml would hold it (what ``python -m pipeline.recipes NAME``
        prints): the model, dataset and train sections' values, nested under the dataset's
        section for a fine-tuning recipe (``datasets.<d>.{model,dataset,train}``), under
        ``ssl.probe`` for a probe recipe."""
        sections = {"model": dict(self.model), "dataset": dict(self.sampling), "train": dict(self.train)}
        sections = {k: v for k, v in sections.items() if v}
        if self.runs_on == "probe":
            return {"ssl": {"probe": dict(self.section)}}
        if self.runs_on in ("kinetics", "ssl"):
            return sections
        return {"datasets": {self.runs_on: {**dict(self.section), **sections}}}


# --------------------------------------------------------------------------- shared parts

# AVSlowFast A.4 / SlowFast Sec. 4: 8 clips per GPU on 128 GPUs, LR 1.6 at 1024, half-period
# cosine, warm-up 8k iterations = 34 epochs from PySlowFast's 0.01 at 64 (0.16 at 1024).
KINETICS_TRAIN = dict(base_lr=1.6, reference_batch=1024, lr_policy="cosine", warmup_epochs=34.0,
                      warmup_start_lr=0.16, warmup_start_absolute=False, cosine_end_lr=0.0, lr_steps=[],
                      iterations=None, warmup_iterations=None, momentum=0.9, weight_decay=1e-4,
                      bn_weight_decay=0.0, freeze_bn=False, objective="labels")
EPOCHS_SHORT_CLIP, EPOCHS_LONG_CLIP = 256, 196  # A.4: 256 epochs when Slow T <= 4, 196 when T > 4
AVSLOWFAST_TRAIN = dict(sync_weight=1.0, hard_negatives_from=0.5, hard_negative_fraction=0.25)
NO_SYNC = dict(sync_weight=0.0)
KINETICS_MODEL = dict(tiny=False, width=None, num_classes=400, head="classification", dropout=0.5,
                      test_pool=None)
# The papers' network options (SlowFast Sec. 3, AVSlowFast Sec. 3-4), set by every recipe
ARCHITECTURE = dict(alpha_f=None, beta_f=0.125, alpha_a=None, beta_a=0.5, lateral_stages=[1, 2, 3, 4],
                    nonlocal_blocks=False, nonlocal_layout="pyslowfast", temporal_layout="suffix_50_50",
                    sync_margin=0.99, sync_scale=0.5, mel_bins=80)
# What every recipe's optimiser fixes besides its LR and schedule (synchronous SGD, plain momentum)
SGD = dict(momentum=0.9, nesterov=False, lr_gamma=0.1, bn_weight_decay=0.0)
AVSLOWFAST_MODEL = dict(drop_pathway=0.8, drop_pathway_mode="fusion", sync=True, fusion="a_fs",
                        fusion_stages=[3, 4], fusion_pool5=True, beta_a=0.5)
R50_SAMPLING = dict(train_scale=[256, 320], train_crop=224, flip=True, test_scale=256, test_crop=256)
R101_SAMPLING = {**R50_SAMPLING, "train_scale": [256, 340]}  # A.4: "[256, 340] for R101"
KINETICS_VIEWS = dict(test_clips=10, test_crops=3)  # 10 clips x 3 crops of 256 (30 views)

R101_AUDIO_NOTE = ("beta_A = 1 (audio width 64): the only width that meets the paper's R101 multiply-adds "
                   "(Table 3's 129 G, Table 4's 278 G, Table 7's 210 G); Sec. 4.2 says 1/2 for its R50 ablations")
NL_PAPER_NOTE = ("non-local pooling 2x2x2 (nonlocal_layout: paper), the variant costing SlowFast Table 2's 234 G; "
                 "official PySlowFast NL checkpoints use 1x2x2 (nonlocal_layout: pyslowfast)")
LONG_FROM_SHORT_NOTE = ("SlowFast Sec. 4: 16x8 models start from their 8x8 counterparts for half the epochs, "
                        "NL models from the ones without NL: set train.init_checkpoint to that run's final.pyth")


def _family_name(arch: str) -> str:
    return {"slow": "Slow-only", "slowfast": "SlowFast", "avslowfast": "AVSlowFast", "audio": "Audio-only"}[arch]


def _backbone(arch: str, depth: int, frames: int, stride: int, **extra: Any) -> dict[str, Any]:
    """Every model key of the paper's network (the ones a recipe does not name would come from
    the user's sections: a recipe fixes the whole network)."""
    model = {**ARCHITECTURE, "arch": arch, "depth": depth, "frames": frames, "stride": stride, **KINETICS_MODEL}
    if arch == "avslowfast":
        model |= AVSLOWFAST_MODEL
        if depth == 101:
            model["beta_a"] = 1.0
    if depth == 101:
        model["nonlocal_layout"] = "paper"
    return model | extra


def _spec_frames(model: Mapping[str, Any]) -> int:
    from avsf.models.config import default_ratios

    return model["frames"] * default_ratios(model["stride"])[1]


def _sampling(model: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    base = R101_SAMPLING if model["depth"] == 101 else R50_SAMPLING
    return {**base, "spec_frames": _spec_frames(model), **extra}


def _kinetics(name: str, title: str, model: dict[str, Any], results: tuple[PaperResult, ...], gmacs: float | None,
              epochs: int | None = None, mparams: float | None = None, starts_from: str | None = None,
              notes: tuple[str, ...] = ()) -> Recipe:
    epochs = epochs or (EPOCHS_SHORT_CLIP if model["frames"] <= 4 else EPOCHS_LONG_CLIP)
    train = {**KINETICS_TRAIN, "epochs": epochs, **(AVSLOWFAST_TRAIN if model["arch"] == "avslowfast" else NO_SYNC),
             "precise_bn_batches": 200 if model["frames"] <= 4 else 400}
    return Recipe(name, "kinetics", title, model, _sampling(model, **KINETICS_VIEWS), train, results=results,
                  gmacs=gmacs, views=30, mparams=mparams, starts_from=starts_from, notes=notes)


def _k400(value: float, source: str) -> tuple[PaperResult, ...]:
    return (PaperResult("top-1", value, source, "official.top1"),)


# --------------------------------------------------------------------------- Kinetics-400

KINETICS = [
    _kinetics("kinetics-slow-r50-4x16", "Slow-only 4x16 R50", _backbone("slow", 50, 4, 16),
              _k400(72.6, "SlowFast Table 5a, Slow-only"), 27.3, mparams=32.4),
    _kinetics("kinetics-slowfast-r50-4x16", "SlowFast 4x16 R50", _backbone("slowfast", 50, 4, 16),
              _k400(75.6, "SlowFast Table 2 / AVSlowFast Table 3, SlowFast R50"), 36.1),
    _kinetics("kinetics-slowfast-r50-8x8", "SlowFast 8x8 R50", _backbone("slowfast", 50, 8, 8),
              _k400(77.0, "SlowFast Table 2, SlowFast 8x8 R50"), 65.7),
    _kinetics("kinetics-slowfast-r101-8x8", "SlowFast 8x8 R101", _backbone("slowfast", 101, 8, 8),
              _k400(77.9, "SlowFast Table 2 / AVSlowFast Table 3, SlowFast R101"), 106.0),
    _kinetics("kinetics-slowfast-r101-16x8", "SlowFast 16x8 R101", _backbone("slowfast", 101, 16, 8),
              _k400(78.9, "SlowFast Table 2, SlowFast 16x8 R101"), 213.0, epochs=EPOCHS_LONG_CLIP // 2,
              starts_from="kinetics-slowfast-r101-8x8", notes=(LONG_FROM_SHORT_NOTE,)),
    _kinetics("kinetics-slowfast-r101-nl-16x8", "SlowFast 16x8 R101+NL",
              _backbone("slowfast", 101, 16, 8, nonlocal_blocks=True),
              _k400(79.8, "SlowFast Table 2, SlowFast 16x8 R101+NL"), 234.0, epochs=EPOCHS_LONG_CLIP // 2,
              starts_from="kinetics-slowfast-r101-16x8", notes=(LONG_FROM_SHORT_NOTE, NL_PAPER_NOTE)),
    _kinetics("kinetics-avslowfast-r50-4x16", "AVSlowFast 4x16 R50", _backbone("avslowfast", 50, 4, 16),
              _k400(77.0, "AVSlowFast Table 3 / Table 5, AVSlowFast R50"), 39.8, mparams=43.6,
              notes=("params: 43.6 M is the authors' code's count (with the pool5 sync laterals); Table A.1 "
                     "prints 38.5 M for the same network (model report: reports/model/flops.md)",
                     "the authors' AVSLOWFAST_4x16_R50 config trains 196 epochs; A.4 says 256 for T <= 4")),
    _kinetics("kinetics-avslowfast-r50-8x8", "AVSlowFast 8x8 R50", _backbone("avslowfast", 50, 8, 8), (), None,
              notes=("no supervised Kinetics figure in the papers: the backbone of the self-supervised "
                     "Table 8; its cost there, 63.4 G, is the same network counted as Table A.1 counts",)),
    _kinetics("kinetics-avslowfast-r101-8x8", "AVSlowFast 8x8 R101", _backbone("avslowfast", 101, 8, 8),
              _k400(78.8, "AVSlowFast Table 3, AVSlowFast R101"), 129.0, notes=(R101_AUDIO_NOTE,)),
    _kinetics("kinetics-avslowfast-r101-nl-16x8", "AVSlowFast 16x8 R101+NL",
              _backbone("avslowfast", 101, 16, 8, nonlocal_blocks=True), (), 278.0, epochs=EPOCHS_LONG_CLIP // 2,
              starts_from="kinetics-avslowfast-r101-8x8",
              notes=("no Kinetics figure in the paper: the backbone Charades starts from (Table 4 counts it: "
                     "278 G)", R101_AUDIO_NOTE, LONG_FROM_SHORT_NOTE, NL_PAPER_NOTE)),
    _kinetics("kinetics-audio-r50", "Audio-only R50", _backbone("audio", 50, 4, 16),
              (PaperResult("top-1", 24.8, "AVSlowFast Table A.3, Audio-only (ours), Kinetics-400", "official.top1"),),
              14.2,
              notes=("the paper does not give the Audio-only network's width; at the AVSlowFast audio "
                     "pathway's (32) it costs 3.0 G, at 64 12.1 G: the 14.2 G stays unexplained",)),
]

# --------------------------------------------------------------------------- EPIC-Kitchens

# A.5: from Kinetics AVSlowFast 8x8 R101, BN frozen into affine layers, separate verb (0.01)
# and noun (0.0006) models at batch 32 for 24k / 30k iterations, x0.1 at 2/3 and 5/6, one
# centre crop at test.
EPIC55_TRAIN = dict(reference_batch=32, lr_policy="steps", lr_steps=[2 / 3, 5 / 6], warmup_epochs=0.0,
                    warmup_iterations=None, iterations=24000, base_lr=0.01, momentum=0.9, weight_decay=1e-4,
                    bn_weight_decay=0.0, freeze_bn=True, precise_bn_batches=0, objective="labels", **NO_SYNC)
EPIC55_SECTION = dict(heads="separate", verb_base_lr=0.01, noun_base_lr=0.0006, verb_iterations=24000,
                      noun_iterations=30000)
ONE_CENTRE_CROP = dict(test_clips=1, test_crops=1)


def _finetune_model(arch: str, depth: int, frames: int, stride: int, **extra: Any) -> dict[str, Any]:
    """A Kinetics backbone without its head (a fine-tuning dataset's head has its classes;
    self-supervised pretraining has its pretexts')."""
    model = _backbone(arch, depth, frames, stride, **extra)
    del model["num_classes"], model["head"]
    return model


def _epic55(arch: str, title: str, values: tuple[float, float, float]) -> Recipe:
    model = _finetune_model(arch, 101, 8, 8)
    row = f"AVSlowFast Table 2, validation, {_family_name(arch)}"
    results = tuple(PaperResult(f"{kind} top-1", v, row, f"{kind}_top1", percent=True)
                    for kind, v in zip(("verb", "noun", "action"), values))
    return Recipe(f"epic55-{arch}-r101-8x8", "epic55", title, model, _sampling(model, **ONE_CENTRE_CROP),
                  EPIC55_TRAIN, EPIC55_SECTION, results=results, gmacs=129.0 if arch == "avslowfast" else 106.0,
                  views=1, starts_from=f"kinetics-{arch}-r101-8x8",
                  notes=("separate verb and noun models (A.5): heads separate, each with its own LR and length",
                         *((R101_AUDIO_NOTE,) if arch == "avslowfast" else ())))


# EPIC-Kitchens-100's own SlowFast baseline (the dataset's release): SlowFast 8x8 R50 from Kinetics,
# two heads, 0.01 at 32, x0.1 at epochs 20 and 25 of 30, warm-up 1 epoch from 0.001, BN frozen, 10 clips.
EPIC100_MODEL = _finetune_model("slowfast", 50, 8, 8)
EPIC100 = Recipe(
    "epic-slowfast-r50-8x8", "epic", "SlowFast 8x8 R50, EPIC-100's baseline", EPIC100_MODEL,
    _sampling(EPIC100_MODEL, test_clips=10, test_crops=1),
    dict(epochs=30, iterations=None, warmup_iterations=None, base_lr=0.01, reference_batch=32, lr_policy="steps",
         lr_steps=[20, 25], warmup_epochs=1.0, warmup_start_lr=0.001, warmup_start_absolute=False, momentum=0.9,
         weight_decay=1e-4, bn_weight_decay=0.0, freeze_bn=True, precise_bn_batches=0, objective="labels",
         **NO_SYNC),
    dict(heads="joint", verb_base_lr=None, noun_base_lr=None, verb_iterations=None, noun_iterations=None),
    gmacs=65.7, views=10, starts_from="kinetics-slowfast-r50-8x8",
    notes=("no figure in the seeds' papers: EPIC-Kitchens-100's results are in its own release",))

EPIC = [_epic55("avslowfast", "AVSlowFast 8x8 R101, EPIC-Kitchens-55", (58.7, 31.7, 24.2)),
        _epic55("slowfast", "SlowFast 8x8 R101, EPIC-Kitchens-55", (55.8, 27.4, 21.9)),
        EPIC100]

# --------------------------------------------------------------------------- Charades

# A.6: from Kinetics 16x8 R101+NL, 40k iterations at batch 8, LR 0.07, x0.1 at 32k, dropout 0.7,
# per-class sigmoid, scores max-pooled over the clips; the rest as Kinetics.
CHARADES_TRAIN = dict(iterations=40000, warmup_iterations=None, reference_batch=8, base_lr=0.07, lr_policy="steps",
                      lr_steps=[0.8], warmup_epochs=0.0, momentum=0.9, weight_decay=1e-4, bn_weight_decay=0.0,
                      freeze_bn=False, precise_bn_batches=400, objective="labels", **NO_SYNC)  # 400: T > 4


def _charades(arch: str, value: float, gmacs: float) -> Recipe:
    model = _finetune_model(arch, 101, 16, 8, nonlocal_blocks=True, dropout=0.7)
    title = f"{_family_name(arch)} 16x8 R101+NL, Charades"
    return Recipe(f"charades-{arch}-r101-nl-16x8", "charades", title, model, _sampling(model, **KINETICS_VIEWS),
                  CHARADES_TRAIN, results=(PaperResult("mAP", value, f"AVSlowFast Table 4, {title.split(',')[0]}", "map"),),
                  gmacs=gmacs, views=30, starts_from=f"kinetics-{arch}-r101-nl-16x8",
                  notes=(NL_PAPER_NOTE, *((R101_AUDIO_NOTE,) if arch == "avslowfast" else ())))


CHARADES = [_charades("avslowfast", 43.7, 278.0), _charades("slowfast", 42.5, 234.0)]

# --------------------------------------------------------------------------- AVA

# A.7 (SlowFast Sec. 5): from Kinetics, 52k iterations at 256 (16 x 16 machines), LR 0.4,
# step-wise x0.1, warm-up 1k iterations, weight decay 1e-7; boxes of score > 0.8, training adds
# detections of IoU > 0.9; one clip centred on the keyframe, short side 256, fully convolutional.
AVA_TRAIN = dict(iterations=52000, warmup_iterations=1000, reference_batch=256, base_lr=0.4, lr_policy="steps",
                 lr_steps=[0.5, 0.75], warmup_epochs=0.0, warmup_start_lr=0.04, warmup_start_absolute=False,
                 momentum=0.9, weight_decay=1e-7, bn_weight_decay=0.0, freeze_bn=False, precise_bn_batches=200,
                 objective="labels", **NO_SYNC)
AVA_SECTION = dict(detection_score=0.8, train_iou=0.9)
AVA_STEPS_NOTE = ("the papers decay 'when validation error saturates': the steps at 1/2 and 3/4 are PySlowFast's AVA "
                  "configs' (epochs 10 and 15 of 20); the warm-up's start (1/10 of the LR) is its Kinetics ratio")
FLOPS_256x320 = "multiply-adds of one fully convolutional 256 x 320 clip, as Table 7 counts"


def _ava(arch: str, depth: int, frames: int, stride: int, value: float, gmacs: float, notes: tuple[str, ...] = ()
         ) -> Recipe:
    nl = depth == 101  # Table 7: "For R101, both use NL blocks"
    model = _finetune_model(arch, depth, frames, stride, nonlocal_blocks=nl, dropout=0.5)
    if nl:
        model["nonlocal_layout"] = "pyslowfast"  # 1x2x2: the cost Table 7 prints
    name = f"ava-{arch}-r{depth}{'-nl' if nl else ''}-{frames}x{stride}"
    title = f"{_family_name(arch)} {frames}x{stride} R{depth}{'+NL' if nl else ''}"
    return Recipe(name, "ava", f"{title}, AVA v2.2", model, _sampling(model, test_scale=256), AVA_TRAIN, AVA_SECTION,
                  results=(PaperResult("mAP", value, f"AVSlowFast Table 7, AVA v2.2, {title}", "map"),), gmacs=gmacs, views=1,
                  view_size=(256, 320), starts_from=f"kinetics-{arch}-r{depth}-{frames}x{stride}",
                  notes=(FLOPS_256x320, AVA_STEPS_NOTE, *notes))


AVA = [
    _ava("slowfast", 50, 4, 16, 24.7, 65.7),
    _ava("avslowfast", 50, 4, 16, 25.9, 67.1,
         notes=("Table 7 charges the audio pathway 1.4 G over SlowFast, Table 5 3.7 G for the same pathway "
                "(its cost does not depend on the frame size): ours is 3.0 G, so this row is 2.5% over",)),
    _ava("slowfast", 101, 8, 8, 27.4, 184.0),
    _ava("avslowfast", 101, 8, 8, 28.6, 210.0, notes=(R101_AUDIO_NOTE,)),
]
# The AVA challenge 2019 report: SlowFast 8x8 R101+NL from Kinetics-600, 12k iterations (58 epochs of
# ~211k boxes: batch ~1024), warm-up 1k, weight decay 1e-7, boxes > 0.8; v2.2 val 29.0 mAP.
_REPORT_MODEL = _finetune_model("slowfast", 101, 8, 8, nonlocal_blocks=True, nonlocal_layout="pyslowfast", dropout=0.5)
AVA.append(Recipe(
    "ava-slowfast-r101-nl-8x8-report", "ava", "SlowFast 8x8 R101+NL, AVA challenge 2019 report", _REPORT_MODEL,
    _sampling(_REPORT_MODEL, test_scale=256),
    {**AVA_TRAIN, "iterations": 12000, "warmup_iterations": 1000, "reference_batch": 1024, "base_lr": 0.8,
     "warmup_start_lr": 0.08},
    AVA_SECTION, results=(PaperResult("mAP", 29.0, "AVA 2019 report Table 2, SlowFast 8x8, AVA v2.2, val", "map"),),
    views=1, view_size=(256, 320), starts_from="Kinetics-600 SlowFast 8x8 R101+NL weights (datasets.ava.init_checkpoints)",
    notes=("batch 1024 from '12k iterations, 58 epochs of ~211k'; the LR is not given for AVA: 0.8 at 1024 is the "
           "report's Kinetics-600 LR ('all other hyper-parameters as in the Kinetics experiments')",
           "the report's Table 2: 'the backbone is R-101+NL'", AVA_STEPS_NOTE)))

# --------------------------------------------------------------------------- self-supervised (A.8)

# Pretraining: Kinetics-400 without labels, 120k iterations at 1024 (64 x 16 machines), LR 1.6,
# x0.1 at 80k, 100k, 110k, warm-up 10k iterations from the LR 0.001 (at 1024: scaled with the
# batch like the LR, it stays 1/1600 of it), easy negatives for the first 60k iterations then 1/4 hard.
SSL_TRAIN = dict(iterations=120000, warmup_iterations=10000, reference_batch=1024, base_lr=1.6, lr_policy="steps",
                 lr_steps=[80 / 120, 100 / 120, 110 / 120], warmup_epochs=0.0, warmup_start_lr=0.001,
                 warmup_start_absolute=False, momentum=0.9, weight_decay=1e-4, bn_weight_decay=0.0, freeze_bn=False,
                 hard_negatives_from=0.5, hard_negative_fraction=0.25, precise_bn_batches=200)
SSL_COST_NOTE = ("Table A.1 counts AVSlowFast 4x16 R50 at 36.2 G where Table 5 counts the same network at 39.8 G: "
                 "its figures are matched as ratios to its own 4x16 row")


def _ssl(arch: str, frames: int, stride: int, pretexts: tuple[str, ...], results: tuple[PaperResult, ...],
         gmacs: float, mparams: float) -> Recipe:
    model = _finetune_model(arch, 50, frames, stride)
    name = f"ssl-{arch}-r50-{frames}x{stride}-{'-'.join('rot' if p == 'rotation' else p for p in pretexts)}"
    title = f"{_family_name(arch)} {frames}x{stride} R50 ({' + '.join(pretexts)})"
    notes = (SSL_COST_NOTE,) + (("Table A.1's 34.2 G / 33.0 M are Table 5a's SlowFast without laterals (ours: 34.16 G "
                                 "/ 33.07 M); the recipe keeps the laterals of every SlowFast (its checkpoints load)",)
                                if arch == "slowfast" else ())
    train = {**SSL_TRAIN, "precise_bn_batches": 200 if frames <= 4 else 400}
    return Recipe(name, "ssl", title, model, _sampling(model), train, pretexts=pretexts, results=results,
                  gmacs=gmacs, mparams=mparams, notes=notes)


def _linear(ucf: float, hmdb: float, where: str) -> tuple[PaperResult, ...]:
    """UCF101 and HMDB51 top-1: the mean over the 3 splits, or split 1 (Table A.1's ablation)."""
    key = "splits.1.top1" if "split 1" in where else "mean_top1"
    return (PaperResult("UCF101 top-1 (linear)", ucf, where, f"datasets.ucf101.{key}"),
            PaperResult("HMDB51 top-1 (linear)", hmdb, where, f"datasets.hmdb51.{key}"))


SSL = [
    _ssl("avslowfast", 8, 8, ("avs", "rotation"), _linear(77.4, 42.2, "AVSlowFast Table 8 / A.1, 3 splits"), 63.4,
         38.5),
    _ssl("avslowfast", 4, 16, ("avs", "rotation"), _linear(77.0, 40.2, "AVSlowFast Table A.1, ablation, split 1"),
         36.2, 38.5),
    _ssl("avslowfast", 4, 16, ("avs",), _linear(73.2, 39.5, "AVSlowFast Table A.1, ablation, split 1"), 36.2, 38.5),
    _ssl("slowfast", 4, 16, ("rotation",), _linear(71.9, 42.0, "AVSlowFast Table A.1, ablation, split 1"), 34.2,
         33.0),
]

# Transfer (A.8): the linear probe (frozen backbone, a new fc: 320k iterations at 64, LR 0.01,
# half-period cosine) and all layers trained (80k / 30k iterations at 16, LR 0.005 / 0.01, cosine).
PROBES = [
    Recipe("probe-linear", "probe", "Linear probe, UCF101 and HMDB51",
           section=dict(mode="linear", iterations=320000, batch_size=64, base_lr=0.01, test_clips=10, test_crops=3),
           results=_linear(77.4, 42.2, "AVSlowFast Table 8, AVSlowFast 8x8 R50, 3 splits"),
           starts_from="a pretrain@<setting> backbone (ssl-avslowfast-r50-8x8-avs-rot)",
           notes=("the figures are the 8x8 R50 AVS + ROT backbone's",)),
]
for _name, _iterations, _lr, _value in (("ucf101", 80000, 0.005, 87.0), ("hmdb51", 30000, 0.01, 54.6)):
    PROBES.append(Recipe(
        f"probe-all-{_name}", "probe", f"All layers trained, {'UCF101' if _name == 'ucf101' else 'HMDB51'}",
        section=dict(mode="all", datasets=[_name], train=dict(
            iterations=_iterations, warmup_iterations=None, reference_batch=16, base_lr=_lr, lr_policy="cosine",
            warmup_epochs=0.0, cosine_end_lr=0.0, sync_weight=0.0)),
        results=(PaperResult(f"{'UCF101' if _name == 'ucf101' else 'HMDB51'} top-1 (all layers)", _value,
                             "AVSlowFast Table A.2, AVSlowFast 16x4 R50, 3 splits", f"datasets.{_name}.mean_top1"),),
        starts_from="a pretrain@<setting> backbone",
        notes=("Table A.2's figure is a 16x4 R50 backbone's",)))

RECIPES: dict[str, Recipe] = {r.name: replace(r, train={**SGD, **r.train}) if r.train else r
                               for r in KINETICS + EPIC + CHARADES + AVA + SSL + PROBES}


def recipe(name: str, where: str = "recipe") -> Recipe:
    """The recipe ``name``; a ValueError naming ``where`` (the params key) and the names."""
    if name not in RECIPES:
        raise ValueError(f"{where}: no recipe {name!r}; recipes: {', '.join(RECIPES)} (python -m pipeline.recipes)")
    return RECIPES[name]


# --------------------------------------------------------------------------- the listing


def model_cost(r: Recipe) -> tuple[float, float] | None:
    """(G multiply-adds per view at the paper's view size, M parameters) of the recipe's model;
    an AVSlowFast's parameters as the authors' code counts them (with the pool5 sync level's
    laterals), the count its paper figure is compared with."""
    if not r.model:
        return None
    from avsf.models.flops import count_cost
    from pipeline.models import config_from_params
    from pipeline.params import ModelParams

    head = "ava" if r.runs_on == "ava" else "classification"
    cost = count_cost(config_from_params(ModelParams(**{**r.model, "head": head})), r.view_size)
    return cost.gmacs, cost.mparams_with_sync_laterals if r.arch == "avslowfast" else cost.mparams


def listing(with_costs: bool = True) -> str:
    """Every recipe with its paper figures, GFLOPs x views (paper; ours) and params, as markdown."""
    lines = ["| recipe | runs on | model | paper result | paper GFLOPs x views | ours G | params M |",
             "| --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in RECIPES.values():
        result = "; ".join(f"{x.metric} {x.value} ({x.source})" for x in r.results) or "-"
        paper = f"{r.gmacs:g} x {r.views or 1}" if r.gmacs else "-"
        cost = model_cost(r) if with_costs else None
        ours = f"{cost[0]:.1f}" if cost else "-"
        params = f"{cost[1]:.1f}" + (f" (paper {r.mparams:g})" if r.mparams else "") if cost else "-"
        lines.append(f"| {r.name} | {r.runs_on} | {r.title} | {result} | {paper} | {ours} | {params} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not args:
        print(listing())
        return 0
    try:
        r = recipe(args[0], "recipe")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"# {r.name}: {r.title} (runs on {r.runs_on}; starts from {r.starts_from or 'scratch'})")
    for x in r.results:
        print(f"# paper: {x.metric} {x.value} ({x.source})")
    for note in r.notes:
        print(f"# note: {note}")
    print(yaml.safe_dump(r.changes(), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
