"""The project of tests/test_dvc.py: a copy of the repository's pipeline with tiny params, as
its own git + DVC repository, reproduced once (`dvc repro` of every stage: minutes), and a
copy of that with an experiment run (`dvc exp run`).

``python tests/dvc_project.py ROOT`` builds it. When the suite runs test_dvc with other
tests, conftest starts that at the session's start and runs test_dvc last: the build needs
nothing of the other tests, and on a machine of 2 cores it takes the one they leave idle
(every test process computes on one thread) instead of adding its minutes to theirs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PROJECT_FILES = ("dvc.yaml", "stages", "pipeline", "avsf", "reports")
LOG = "build.log"  # beside the project: what the build printed
FIRST_REPRO = "first_repro.log"  # in the project: the output of its `dvc repro`
EXPERIMENT = "experiment"  # beside the project: a copy of it after the repro, with an experiment run
EXPERIMENT_LOG = "exp_run.log"  # in that copy: the output of its `dvc exp run`
DATASETS = ("kinetics", "epic", "epic55", "charades", "ava", "ucf101", "hmdb51")
# The experiment test_dvc checks: three params, and as targets only the stages its checks
# read (each costs a stage's run): the downloads with the decodes after them, AVSlowFast's
# Kinetics run, SlowFast's EPIC fine-tuning and evaluation. `dvc status` names the rest.
EXPERIMENT_ARGS = ("-S", "family.avslowfast.drop_pathway=0.0", "-S", "download.retries=5",
                   "-S", "datasets.epic.heads=separate", *(f"decode@{d}" for d in DATASETS), "train@avslowfast",
                   "evaluate_finetuned@epic-slowfast")


def sh(*cmd: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(*args: str, cwd: Path) -> str:
    result = sh(sys.executable, "-m", "dvc", *args, cwd=cwd)
    return result.stdout + result.stderr


def build(root: Path) -> None:
    from conftest import write_params

    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "bench")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, root / name)
    # Jobs in-process (submitit's debug executor): the stages' own work as it runs anywhere,
    # without a second interpreter per stage (test_launch and test_slurm cover the executors).
    # Batches of 4: the 15 training clips make 3 steps, a curve, with the last incomplete batch dropped.
    write_params(root / "params.yaml", {"launch.cluster": "debug", "train.batch_size": 4, "train.reference_batch": 4})
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    sh("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "project", cwd=root)  # as a user's project has (DVCLive reads the revision)
    first = dvc("repro", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "tiny pipeline", cwd=root)
    (root / FIRST_REPRO).write_text(first)
    # The experiment changes its project: it runs in a copy, so that the project stays as the
    # repro left it for the other tests.
    experiment = root.parent / EXPERIMENT
    shutil.copytree(root, experiment, symlinks=True)
    (experiment / EXPERIMENT_LOG).write_text(dvc("exp", "run", *EXPERIMENT_ARGS, cwd=experiment))


class Build:
    """``build(root)`` in a process of its own (its own session, so that it and its stages
    can be stopped together)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        with (root.parent / LOG).open("w") as log:
            self.process = subprocess.Popen([sys.executable, str(Path(__file__)), str(root)], cwd=TESTS, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> Path:
        """The built project; fails with the build's output if it failed."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        log = (self.root.parent / LOG).read_text()
        assert code == 0, f"building the DVC project in {self.root} failed (exit {code}):\n{log[-8000:]}"
        return self.root

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    build(Path(sys.argv[1]))
