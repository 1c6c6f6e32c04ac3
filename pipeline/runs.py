"""What a stage computes with: params.yaml's sections combined for one run, by plain functions.

    member_params(params, m)          the model section with family.<m>'s changes
    kinetics_run(params, m)           train@<m>: member m on the pretraining dataset (Kinetics)
    finetune_run(params, d, m)        finetune@<d>-<m>: member m's Kinetics run fine-tuned on d with
                                      datasets.<d>'s train, dataset and model changes (they win
                                      over the family's), from init_checkpoints[m] or its final.pyth
    pretrain_run(params, s)           pretrain@<s>: ssl.settings.<s>'s member on the Kinetics store,
                                      ssl.train's changes, the objective its pretexts make
    training_run(params, d, m, s)     the one a stage's --dataset / --member / --pretext name

Each :class:`TrainRun` holds the sections it computes with (a :class:`Params` whose model,
dataset and train sections are the run's own), its dataset, where it writes (pipeline.layout)
and, for every key of those sections, the params.yaml key its value came from, so that an
error names the key the user set. :func:`check_params` runs every check across sections once,
after the schema (pipeline.params.load_params), on every run the file defines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from avsf.train import checkpoint as ckpt
from pipeline.datasets import dataset, dataset_class, pretraining_dataset
from pipeline.datasets.base import Dataset
from pipeline.launch import stage_launch
from pipeline.layout import SSL, Layout, RunPaths
from pipeline.params import (
    VARIANT_NAME,
    DatasetParams,
    ModelParams,
    Params,
    ParamsError,
    ProbeParams,
    TrainParams,
    describe_error,
)
from pipeline.recipes import RECIPES, Recipe, recipe

DEFAULT_MEMBER = "model"  # a run of the model section as it is (a stage run without --member)
PROBE_REFERENCES = ("random", "supervised")  # probed backbones beside ssl.settings


@dataclass(frozen=True)
class TrainRun:
    """One training run: ``params``' model, dataset and train sections are the run's own."""

    stage: str  # as dvc.yaml names it: train@slowfast, finetune@epic-slowfast, pretrain@avs
    name: str  # its directory's: the member (or "model"), the pretext setting
    dataset: Dataset  # whose store and labels it trains on
    params: Params
    paths: RunPaths
    train_split: str
    val_split: str
    target: str | None = None  # EPIC's separate models: the one this run learns
    live_prefix: str = ""  # several models' curves in one directory (EPIC's verb_ and noun_)
    replace_head: bool = False  # the initial weights' head is left out (fine-tuning on other classes)
    origins: dict[str, str] = field(default_factory=dict, repr=False)  # "train.epochs" -> the key set
    recipe: Recipe | None = None  # the paper configuration it follows (pipeline.recipes)

    def key(self, key: str) -> str:
        """The params.yaml key the value of ``key`` (e.g. ``train.batch_size``) came from."""
        return self.origins.get(key, key)



# --------------------------------------------------------------------------- combining sections


def _merge(section: str, model: type[BaseModel], base: BaseModel, *changes: tuple[str, dict[str, Any]],
           origins: dict[str, str]) -> Any:
    """``base`` with each ``(prefix, changes)`` applied in turn (the last wins), validated;
    ``origins`` records each changed key's prefix, and a validation error names it."""
    raw = base.model_dump()
    for prefix, values in changes:
        unknown = [k for k in values if k not in model.model_fields]
        if unknown:
            raise ValueError(f"{prefix}.{unknown[0]}: unknown {section} key; allowed: {', '.join(model.model_fields)}")
        raw.update(values)
        origins.update({f"{section}.{k}": f"{prefix}.{k}" for k in values})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        if loc:  # a key's own check: named where its value was set
            where = origins.get(f"{section}.{loc[0]}", f"{section}.{loc[0]}")
            raise ValueError(describe_error(exc, tuple(where.split(".")[:-1]))) from None
        last = next((prefix for prefix, values in reversed(changes) if values), section)
        raise ValueError(describe_error(exc, (last,))) from None


def member_params(params: Params, member: str | None, origins: dict[str, str] | None = None) -> Params:
    """``params`` with family member ``member``'s changes to the model section (None or
    "model": the section as it is)."""
    origins = {} if origins is None else origins
    if member in (None, DEFAULT_MEMBER):
        return params
    if member not in params.family:
        raise ParamsError(f"family: no member {member!r}; members: {', '.join(params.family) or '(none)'}")
    model = _merge("model", ModelParams, params.model, (f"family.{member}", params.family[member]), origins=origins)
    return params.model_copy(update={"model": model})


def kinetics_run(params: Params, member: str | None, recipe_name: str | None = None) -> TrainRun:
    """Stage train@<member>: the member trained from scratch on the pretraining dataset, with
    the recipe recipes.<kinetics>.<member> (or ``recipe_name``) names."""
    origins: dict[str, str] = {}
    p = member_params(params, member, origins)
    ds = pretraining_dataset(params)
    name = member or DEFAULT_MEMBER
    r = run_recipe(params, ds.name, name, p.model.arch, recipe_name)
    if r is not None:
        p = with_recipe(p, r, origins)
    p = p.model_copy(update={"launch": stage_launch(params.launch, ds.name, name)})
    return TrainRun(f"train@{name}", name, ds, p, Layout.of(params.layout).run(ds.name, name), ds.train_split,
                    ds.test_split, origins=origins, recipe=r)


def finetune_run(params: Params, name: str, member: str | None, recipe_name: str | None = None) -> TrainRun:
    """Stage finetune@<name>-<member>: the member's Kinetics run fine-tuned on dataset
    ``name`` with the dataset section's changes, its head new; then the recipe
    recipes.<name>.<member> (or ``recipe_name``) names, if any."""
    origins: dict[str, str] = {}
    p = member_params(params, member, origins)
    member_name = member or DEFAULT_MEMBER
    r = run_recipe(params, name, member_name, p.model.arch, recipe_name)
    if r is not None and r.section:  # the dataset's own keys (EPIC's heads, AVA's boxes)
        section = params.datasets[name].model_copy(update=dict(r.section))
        params = params.model_copy(update={"datasets": {**params.datasets, name: section}})
    ds = dataset(params, name)
    section = ds.section
    where = f"datasets.{name}"
    start = section.init_checkpoints.get(member_name) or str(
        Layout.of(params.layout).run(pretraining_dataset(params).name, member_name).out_dir / ckpt.FINAL)
    if r is not None:
        recipe_start_check(params, name, member_name, r, "--recipe" if recipe_name else f"recipes.{name}.{member_name}")
    start_model, start_sampling = _start_architecture(params, name, member_name)
    model = _merge("model", ModelParams, p.model, *start_model, (f"{where}.model", section.model), origins=origins)
    sampling = _merge("dataset", DatasetParams, p.dataset, *start_sampling, (f"{where}.dataset", section.dataset),
                      origins=origins)
    train = _merge("train", TrainParams, p.train, (f"{where}.train", section.train),
                   (f"{where}.init_checkpoints", {"init_checkpoint": start}), origins=origins)
    p = p.model_copy(update={"model": model, "dataset": sampling, "train": train,
                             "launch": stage_launch(params.launch, name, member_name)})
    if r is not None:
        p = with_recipe(p, r, origins)
    return TrainRun(f"finetune@{name}-{member_name}", member_name, ds, p, Layout.of(params.layout).run(name, member_name),
                    ds.train_split, ds.test_split, replace_head=True, origins=origins, recipe=r)


def pretrain_run(params: Params, setting: str, recipe_name: str | None = None) -> TrainRun:
    """Stage pretrain@<setting>: its member's model on the pretraining dataset's store without
    labels, with ssl.train's changes and the objective its pretexts make (rotation: the 4-way
    rotation head; avs alone: AV-sync alone; without avs: sync weight 0)."""
    ssl = params.ssl
    if ssl is None or setting not in ssl.settings:
        known = ", ".join(ssl.settings) if ssl is not None else "(no ssl section)"
        raise ParamsError(f"ssl.settings: no setting {setting!r}; settings: {known}")
    s = ssl.settings[setting]
    origins: dict[str, str] = {}
    p = member_params(params, s.member, origins)
    objective = {"objective": "rotation" if "rotation" in s.pretexts else "sync"}
    no_sync = {} if "avs" in s.pretexts else {"sync_weight": 0.0}
    train = _merge("train", TrainParams, p.train, ("ssl.train", ssl.train),
                   (f"ssl.settings.{setting}.pretexts", {**objective, **no_sync}), origins=origins)
    ds = pretraining_dataset(params)
    p = p.model_copy(update={"train": train, "launch": stage_launch(params.launch, SSL, setting)})
    r = _recipe_for(recipe_name or _chosen(params, SSL, setting),
                    "--recipe" if recipe_name else f"recipes.{SSL}.{setting}", SSL)
    if r is not None:
        if sorted(r.pretexts) != sorted(s.pretexts) or r.arch != p.model.arch:
            where = "--recipe" if recipe_name else f"recipes.{SSL}.{setting}"
            raise ParamsError(f"{where}: {r.name} pretrains a {r.arch} on {' + '.join(r.pretexts)}; setting "
                              f"{setting} is {p.model.arch} on {' + '.join(s.pretexts)} (python -m pipeline.recipes)")
        p = with_recipe(p, r, origins)
    return TrainRun(f"pretrain@{setting}", setting, ds, p, Layout.of(params.layout).run(SSL, setting), ds.train_split,
                    ds.test_split, origins=origins, recipe=r)


def training_run(params: Params, name: str | None = None, member: str | None = None,
                 pretext: str | None = None, recipe_name: str | None = None) -> TrainRun:
    """The run a stage's ``--dataset`` / ``--member`` / ``--pretext`` name (none of them: the
    model section as it is, trained on Kinetics), with ``--recipe`` instead of params.yaml's."""
    if pretext is not None:
        if name is not None or member is not None:
            raise ParamsError("--pretext names the whole run: it takes no --dataset or --member")
        return pretrain_run(params, pretext, recipe_name)
    if name is None or dataset_class(name).pretraining:
        if name is not None:
            params.section(name)
        return kinetics_run(params, member, recipe_name)
    if not dataset_class(name).finetunable:
        raise ParamsError(f"--dataset {name}: nothing is fine-tuned on {name} (it is probed: stage probe)")
    return finetune_run(params, name, member, recipe_name)


def target_runs(run: TrainRun) -> list[TrainRun]:
    """The models a run trains: itself, or EPIC's separate verb and noun models, each in
    ``<out_dir>/<target>`` with its own learning rate, their curves in the run's directory
    under ``<target>_``."""
    targets = run.dataset.targets()
    if targets == [None]:
        return [run]
    out = []
    for target in targets:
        train = run.dataset.target_train(run.params.train, target)
        p = run.params.model_copy(update={"train": train,
                                          "launch": stage_launch(run.params.launch, target)})
        paths = RunPaths(run.paths.out_dir / target, run.paths.live_dir)
        out.append(replace(run, params=p, paths=paths, target=target, live_prefix=f"{target}_"))
    return out


# --------------------------------------------------------------------------- recipes


def _chosen(params: Params, run_on: str, name: str) -> str | None:
    """recipes.<run_on>.<name>: the recipe params.yaml names for a run, or None."""
    chosen = params.recipes.get(run_on) or {}
    return chosen.get(name) if isinstance(chosen, dict) else None


def _recipe_for(chosen: str | None, where: str, runs_on: str) -> Recipe | None:
    """The recipe ``chosen`` names at ``where`` (a params key or --recipe), made for
    ``runs_on``; None for none."""
    if chosen is None:
        return None
    r = recipe(chosen, where)
    if r.runs_on != runs_on:
        raise ParamsError(f"{where}: {r.name} is a recipe for {r.runs_on}, not {runs_on} (python -m pipeline.recipes)")
    return r


def run_recipe(params: Params, name: str, member: str, arch: str, override: str | None = None) -> Recipe | None:
    """The recipe of member ``member``'s run on dataset ``name`` (``override``: a stage's
    --recipe, else recipes.<name>.<member>), checked to fit the run."""
    where = "--recipe" if override else f"recipes.{name}.{member}"
    r = _recipe_for(override or _chosen(params, name, member), where, name)
    if r is not None and r.arch != arch:
        raise ParamsError(f"{where}: {r.name} trains a {r.arch}; member {member} is a {arch}")
    return r


def with_recipe(p: Params, r: Recipe, origins: dict[str, str]) -> Params:
    """``p``'s model, dataset and train sections with recipe ``r``'s values. The network is
    the recipe's whole (every model key not its own at the papers' default, the schema's),
    but the head of a recipe that leaves it to the dataset (fine-tuning, pretexts)."""
    prefix = f"recipe {r.name}:"
    head = {k: getattr(p.model, k) for k in ("head", "num_classes") if k not in r.model}
    papers = {**ModelParams().model_dump(), **head, **dict(r.model)}
    model = _merge("model", ModelParams, p.model, (f"{prefix} model", papers), origins=origins)
    sampling = _merge("dataset", DatasetParams, p.dataset, (f"{prefix} dataset", dict(r.sampling)), origins=origins)
    train = _merge("train", TrainParams, p.train, (f"{prefix} train", dict(r.train)), origins=origins)
    return p.model_copy(update={"model": model, "dataset": sampling, "train": train})


def probe_params(params: Params) -> ProbeParams:
    """ssl.probe with the values of the recipe recipes.probe names, if any."""
    probe, chosen = params.ssl.probe, params.recipes.get("probe")
    if chosen is not None and not isinstance(chosen, str):
        raise ParamsError("recipes.probe: one probe recipe's name (probe-linear, probe-all-ucf101, probe-all-hmdb51)")
    r = _recipe_for(chosen, "recipes.probe", "probe")
    return probe if r is None else ProbeParams.model_validate({**probe.model_dump(), **r.section})


def _start_architecture(params: Params, name: str, member: str) -> tuple[list, list]:
    """The network of the Kinetics weights a fine-tuning run starts from, when the member's
    Kinetics run follows a recipe: its model keys but the head's, and the log-mel length that
    network takes (the weights fit); as (model changes, dataset changes) for _merge."""
    if params.datasets[name].init_checkpoints.get(member):
        return [], []
    start = _chosen(params, pretraining_dataset(params).name, member)
    if start is None:
        return [], []
    r = recipe(start)
    head_keys = ("num_classes", "head", "dropout", "test_pool")
    return ([(f"recipe {start}: model", {k: v for k, v in r.model.items() if k not in head_keys})],
            [(f"recipe {start}: dataset", {"spec_frames": r.sampling["spec_frames"]})])


def recipe_start_check(params: Params, name: str, member: str, r: Recipe, where: str) -> None:
    """A fine-tuning recipe starts from the Kinetics weights its paper names: the member's
    Kinetics run must follow that recipe, or datasets.<name>.init_checkpoints.<member> be set."""
    if params.datasets[name].init_checkpoints.get(member):
        return
    kinetics = pretraining_dataset(params).name
    if r.starts_from not in RECIPES:
        raise ParamsError(f"{where}: {r.name} starts from {r.starts_from}: set datasets.{name}.init_checkpoints.{member}")
    if _chosen(params, kinetics, member) != r.starts_from:
        raise ParamsError(f"{where}: {r.name} starts from the weights of recipe {r.starts_from}: set "
                          f"recipes.{kinetics}.{member}: {r.starts_from} (or datasets.{name}.init_checkpoints.{member})")


# --------------------------------------------------------------------------- checks across sections


def all_runs(params: Params) -> list[TrainRun]:
    """Every training run params.yaml defines: the family on Kinetics, each member on each
    fine-tuning dataset, each pretext setting."""
    runs = []
    if any(dataset_class(n).pretraining for n in params.datasets):
        runs += [kinetics_run(params, m) for m in params.family]
        runs += [finetune_run(params, d, m) for d in params.finetune.datasets for m in params.finetune.members]
        if params.ssl is not None:
            runs += [pretrain_run(params, s) for s in params.ssl.settings]
    return runs


def check_params(params: Params) -> None:
    """Every check across sections, once; a ValueError naming the key the user set."""
    for name, changes in params.family.items():
        if not VARIANT_NAME.fullmatch(name) or name == DEFAULT_MEMBER:
            raise ValueError(f"family.{name}: a member's name is lower-case letters, digits and _ (not "
                             f"{DEFAULT_MEMBER!r}, the model section's own runs)")
        if not isinstance(changes, dict):
            raise ValueError(f"family.{name}: a mapping of model keys to values, e.g. {{arch: slowfast}}")
    for name in params.datasets:
        ds = dataset(params, name)
        if ds.flavour is not None:
            ds.flavour.spec(ds.demo_settings(), f"datasets.{name}.demo")
        ds.check(params)
    _check_finetune(params)
    _check_ssl(params)
    for run in all_runs(params):
        check_run(run)
    _check_recipes(params)


def _check_recipes(params: Params) -> None:
    """Every run params.yaml names a recipe for exists, and the recipe fits it (all_runs
    applied each to its run; here what no run reaches)."""
    kinetics = pretraining_dataset(params).name if any(dataset_class(n).pretraining for n in params.datasets) else None
    runs_on = {kinetics: params.family, **{d: params.family for d in params.finetune.datasets},
               SSL: params.ssl.settings if params.ssl else {}}
    for name, chosen in params.recipes.items():
        if name == "probe":
            if params.ssl is not None:
                probe_params(params)
            continue
        if isinstance(chosen, dict) and not any(chosen.values()):
            continue  # nothing chosen (a dataset params.yaml does not train on may list its members)
        if name not in runs_on or not isinstance(chosen, dict):
            raise ValueError(f"recipes.{name}: recipes are named per run: recipes.<dataset>.<member> for the "
                             f"pretraining dataset and finetune.datasets ({', '.join(d for d in runs_on if d)}), "
                             f"recipes.ssl.<setting>, recipes.probe")
        for run, picked in chosen.items():
            if picked is None:
                continue
            if run not in runs_on[name]:
                raise ValueError(f"recipes.{name}.{run}: no such {'setting' if name == SSL else 'member'}; "
                                 f"{', '.join(runs_on[name]) or '(none)'}")


def _check_finetune(params: Params) -> None:
    ft = params.finetune
    for member in ft.members:
        if member not in params.family:
            raise ValueError(f"finetune.members: {member!r} is not a family member; members: "
                             f"{', '.join(params.family) or '(none)'}")
    for name in ft.datasets:
        if name not in params.datasets:
            raise ValueError(f"finetune.datasets: {name!r} has no section in datasets; datasets: "
                             f"{', '.join(params.datasets) or '(none)'}")
        if not dataset_class(name).finetunable:
            raise ValueError(f"finetune.datasets: nothing is fine-tuned on {name!r}")
        section = params.datasets[name]
        if "arch" in section.model:
            raise ValueError(f"datasets.{name}.model.arch: the architecture is the member's (family)")
        unknown = [m for m in section.init_checkpoints if m not in ft.members]
        if unknown:
            raise ValueError(f"datasets.{name}.init_checkpoints.{unknown[0]}: not one of finetune.members")


def _check_ssl(params: Params) -> None:
    ssl = params.ssl
    if ssl is None:
        return
    for key in ("random_member", "supervised_member"):
        if getattr(ssl, key) not in params.family:
            raise ValueError(f"ssl.{key}: {getattr(ssl, key)!r} is not a family member; members: "
                             f"{', '.join(params.family) or '(none)'}")
    for name in ssl.probe.datasets:
        if name not in params.datasets or not dataset_class(name).probed:
            raise ValueError(f"ssl.probe.datasets: {name} is not a probed dataset of datasets (ucf101, hmdb51)")
    for key, changes in (("ssl.train", ssl.train), ("ssl.probe.train", ssl.probe.train)):
        bad = [k for k in changes if k not in TrainParams.model_fields or k == "objective"]
        if bad:
            raise ValueError(f"{key}.{bad[0]}: unknown train key (the objective is the pretexts' or the labels'); "
                             f"allowed: {', '.join(f for f in TrainParams.model_fields if f != 'objective')}")
    _merge("train", TrainParams, params.train, ("ssl.probe.train", ssl.probe.train), origins={})
    for name, s in ssl.settings.items():
        if not VARIANT_NAME.fullmatch(name) or name in PROBE_REFERENCES:
            raise ValueError(f"ssl.settings.{name}: a setting's name is lower-case letters, digits and _, not "
                             f"{' or '.join(PROBE_REFERENCES)} (the probes' references)")
        if s.member not in params.family:
            raise ValueError(f"ssl.settings.{name}.member: {s.member!r} is not a family member; members: "
                             f"{', '.join(params.family) or '(none)'}")
        m = member_params(params, s.member).model
        if "avs" in s.pretexts and not (m.arch == "avslowfast" and m.sync):
            raise ValueError(f"ssl.settings.{name}.pretexts: avs needs an AVSlowFast member with model.sync "
                             f"true; {s.member} is {m.arch}{'' if m.sync else ' without sync'}")
        if "avs" in s.pretexts and any(dataset_class(n).pretraining for n in params.datasets):
            run = pretrain_run(params, name)
            if run.params.train.sync_weight <= 0:
                raise ValueError(f"{run.key('train.sync_weight')}: 0 switches AV-sync off, but ssl.settings.{name} "
                                 f"pretrains on avs: set ssl.train.sync_weight > 0 (or drop avs from its pretexts)")


def check_run(run: TrainRun) -> None:
    """Combinations that cannot train, refused before any job starts."""
    from avsf.models.config import WITH_AUDIO, WITH_FAST

    p, ds = run.params, run.dataset
    m, d, t = p.model, p.dataset, p.train
    if m.head not in ds.heads:
        raise ValueError(f"{run.key('model.head')}: {ds.name} trains the {' or '.join(ds.heads)} head, not "
                         f"{m.head!r} ({run.stage})")
    ranks = p.launch.world_size("train")
    if t.batch_size % ranks:
        raise ValueError(f"{run.key('train.batch_size')}: {t.batch_size} does not split evenly over {ranks} ranks "
                         "(launch nodes x tasks_per_node for train)")
    alpha_f, alpha_a = m.ratios()
    if m.arch in WITH_FAST and m.stride % alpha_f:
        raise ValueError(f"{run.key('model.stride')}: {m.stride} is not a multiple of the Fast pathway's alpha "
                         f"({alpha_f})")
    if m.arch in WITH_AUDIO:
        if m.frames * alpha_a != d.spec_frames:
            raise ValueError(f"{run.key('dataset.spec_frames')}: {d.spec_frames} log-mel frames, but the model's "
                             f"audio input is model.frames x alpha_a = {m.frames} x {alpha_a} = {m.frames * alpha_a}")
        if p.spectrogram.n_mels != m.mel_bins:
            raise ValueError(f"{run.key('model.mel_bins')}: {m.mel_bins}, but spectrogram.n_mels is {p.spectrogram.n_mels}")
    if t.objective != "labels" and not ds.pretraining:
        raise ValueError(f"{run.key('train.objective')}: {t.objective!r} pretrains without labels on the Kinetics "
                         f"store; a run on {ds.name} learns its labels (objective: labels)")
    if t.objective == "sync" and not (m.arch == "avslowfast" and m.sync and t.sync_weight > 0):
        raise ValueError(f"{run.key('train.objective')}: 'sync' learns AV-synchronisation alone ({run.stage}): it "
                         f"needs model.arch avslowfast with model.sync true and a sync weight > 0; here "
                         f"{run.key('model.arch')} is {m.arch}, {run.key('model.sync')} {m.sync}, "
                         f"{run.key('train.sync_weight')} {t.sync_weight}")
