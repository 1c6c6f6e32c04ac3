"""The shared shape of every stage script: ``--params``, repeatable ``--set``, exit codes.

Exit codes: 0 done; 1 the stage's work failed (a job error, or nothing at all could be
processed); 2 bad params (one line on stderr naming the key and what is allowed; nothing
is written, because params are validated before any work starts, and checked against the
stage's inputs where they must agree, as train's against its store, before any job
starts); 130 interrupted (Ctrl-C or SIGTERM: the stage's jobs are cancelled).
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

import click

from pipeline.launch import StageFailed
from pipeline.params import Params, ParamsError, load_params

PARAMS_HELP = "params file; every section is validated before any work starts"
SET_HELP = "override one param for this run, e.g. --set download.workers=4 (repeatable)"
DATASET_HELP = ("a dataset section of params.yaml (epic, charades, ava, ucf101, hmdb51): its download, decode, spectrogram, "
                "train and evaluate settings and outputs (Params.for_dataset; with --variant, the member "
                "fine-tuned from its Kinetics run: Params.finetune)")
PRETEXT_HELP = ("a self-supervised pretraining setting of params.yaml's ssl.settings (e.g. avs_rotation): "
                "its member's model trained on the Kinetics store without labels, on its pretexts "
                "(Params.pretrain; dvc.yaml's pretrain@<setting>)")
BACKBONE_HELP = "the backbone probed: a setting of ssl.settings, random or supervised (dvc.yaml: probe@<setting>, probe_reference@random|supervised)"
VARIANT_HELP = ("a member of params.yaml's family (e.g. slowfast): its model changes applied, its "
                "outputs in its own place (dvc.yaml's <stage>@<member>); default: the model section as it is")


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def _interrupt(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise KeyboardInterrupt


def stage_command(run: Callable[..., None], variants: bool = False, datasets: bool = False,
                  pretexts: bool = False, backbones: bool = False) -> click.Command:
    """Wrap ``run(params)`` as a click command; its docstring is the command's --help.
    With ``variants`` it takes ``--variant NAME``, a member of the params' family; with
    ``datasets`` ``--dataset NAME``, a fine-tuning dataset; with ``pretexts`` ``--pretext
    NAME``, a self-supervised setting; with ``backbones`` a required ``--backbone NAME``,
    passed on as ``run(params, backbone)``."""

    def command(params_path: str, overrides: tuple[str, ...], variant: str | None = None,
                dataset: str | None = None, pretext: str | None = None, backbone: str | None = None) -> None:
        try:
            params = load_params(params_path, overrides)
            if pretext is not None:
                if dataset is not None or variant is not None:
                    raise ParamsError("--pretext names the whole run: it takes no --dataset or --variant")
                params = params.pretrain(pretext)
            elif dataset is not None and variant is not None:
                params = params.finetune(dataset, variant)
            elif dataset is not None:
                params = params.for_dataset(dataset)
            elif variant is not None:
                params = params.variant(variant)
        except ParamsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        configure_logging()
        signal.signal(signal.SIGTERM, _interrupt)  # DVC stops a stage with SIGTERM: cancel its jobs too
        try:
            run(params) if backbone is None else run(params, backbone)
        except ParamsError as exc:  # params that do not fit what the stage found (its inputs), before any job
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except StageFailed as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: the stage's jobs were cancelled", err=True)
            sys.exit(130)

    if backbones:
        command = click.option("--backbone", required=True, metavar="NAME", help=BACKBONE_HELP)(command)
    if pretexts:
        command = click.option("--pretext", default=None, metavar="NAME", help=PRETEXT_HELP)(command)
    if datasets:
        command = click.option("--dataset", default=None, metavar="NAME", help=DATASET_HELP)(command)
    if variants:
        command = click.option("--variant", default=None, metavar="NAME", help=VARIANT_HELP)(command)
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(command)
    command = click.option("--params", "params_path", default="params.yaml", show_default=True,
                           type=click.Path(dir_okay=False), help=PARAMS_HELP)(command)
    return click.command(name=run.__name__, help=run.__doc__)(command)
