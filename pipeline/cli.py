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
from pipeline.params import ParamsError, load_params

PARAMS_HELP = "params file; every section is validated before any work starts"
SET_HELP = "override one param for this run, e.g. --set download.workers=4 (repeatable)"
OPTION_HELP = {
    "dataset": "a dataset of params.yaml's datasets (kinetics, epic, charades, ava, ucf101, hmdb51, ...); default: "
               "the one the family is trained on (kinetics)",
    "member": "a member of params.yaml's family (e.g. slowfast): its model changes applied, its outputs in its "
              "own place (dvc.yaml's <stage>@<member>); default: the model section as it is",
    "pretext": "a self-supervised pretraining setting of params.yaml's ssl.settings (e.g. avs_rotation): its "
               "member's model trained on the Kinetics store without labels, on its pretexts (dvc.yaml's "
               "pretrain@<setting>)",
    "backbone": "the backbone probed: a setting of ssl.settings, random or supervised (dvc.yaml: probe@<setting>, "
                "probe_reference@random|supervised)",
    "recipe": "a named paper configuration for this run (python -m pipeline.recipes lists them), instead of "
              "params.yaml's recipes.<dataset>.<member> or recipes.ssl.<setting>; evaluate a run trained with "
              "--recipe with the same --recipe (its test views)",
    "report": "what to summarise: a dataset of params.yaml's datasets, or ssl (the self-supervised backbones)",
}
REQUIRED = ("backbone", "report")


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


def stage_command(run: Callable[..., None], *options: str) -> click.Command:
    """Wrap ``run(params, **selection)`` as a click command; its docstring is the command's
    --help. ``options`` name what the stage selects (dataset, member, pretext, backbone,
    report: see OPTION_HELP), passed on as keyword arguments; a selection that params.yaml
    does not define exits with code 2, as a params error does, before anything is written."""

    def command(params_path: str, overrides: tuple[str, ...], **selection: str | None) -> None:
        try:
            params = load_params(params_path, overrides)
        except ParamsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        configure_logging()
        signal.signal(signal.SIGTERM, _interrupt)  # DVC stops a stage with SIGTERM: cancel its jobs too
        # Ctrl-C cancels the jobs even where the stage inherited SIGINT ignored (a shell's background
        # command starts so, and Python then leaves it ignored): a kill -INT still stops it.
        signal.signal(signal.SIGINT, _interrupt)
        try:
            run(params, **selection)
        except ParamsError as exc:  # a selection params.yaml lacks, or params that do not fit the stage's inputs
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except StageFailed as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: the stage's jobs were cancelled", err=True)
            sys.exit(130)

    for name in reversed(options):
        command = click.option(f"--{name}", required=name in REQUIRED, default=None, metavar="NAME",
                               help=OPTION_HELP[name])(command)
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(command)
    command = click.option("--params", "params_path", default="params.yaml", show_default=True,
                           type=click.Path(dir_okay=False), help=PARAMS_HELP)(command)
    return click.command(name=run.__name__, help=run.__doc__)(command)
