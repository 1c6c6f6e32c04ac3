"""In headless Chromium with the network unreachable: the page of a plain `dvc plots show`
draws every plot and requests nothing off the machine, where DVC's own page draws nothing;
and a summary's figure draws a bar per value. Skipped where no Chromium is installed
(.ci/run installs Debian's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import Chromium, chromium_path, non_white_fraction
from conftest import REPO
from pipeline.datasets import dataset
from pipeline.figures import write_figures
from pipeline.params import load_params
from pipeline.summary import member_results
from pipeline.vega import PAGE_TEMPLATE

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None, reason="no chromium installed (.ci/run installs it)")]

DVC_YAML = """\
plots:
  - live/epochs:
      x: step
  - confusion.csv:
      template: confusion
      x: actual
      y: predicted
  - per_class.csv:
      template: bar_horizontal
      x: value
      y: class
  - figures
"""
VEGA_PLOTS = 3  # live/epochs/top1.tsv, confusion.csv, per_class.csv; figures/ holds an image
CHARTS = "document.querySelectorAll('svg.marks').length"
IMAGES = "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"


@pytest.fixture(scope="module")
def browser():
    with Chromium(chromium_path()) as chromium:
        yield chromium


def ava_figure(folder: Path):
    params = load_params(REPO / "params.yaml")
    (figure,) = dataset(params, "ava").figures(member_results(params, "ava", REPO), params)
    write_figures(folder, [figure])
    return figure


@pytest.fixture()
def project(tmp_path):
    """A DVC project with the repository's .dvc/config and page, a curve, a confusion plot,
    a bar plot and a summary figure."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(REPO / ".dvc/config", tmp_path / ".dvc/config")
    shutil.copy(REPO / PAGE_TEMPLATE, tmp_path / PAGE_TEMPLATE)
    (tmp_path / "live/epochs").mkdir(parents=True)
    (tmp_path / "live/epochs/top1.tsv").write_text("step\ttop1\n1\t0.2\n2\t0.5\n3\t0.7\n")
    (tmp_path / "confusion.csv").write_text("actual,predicted\na,a\na,b\nb,b\nc,c\nc,a\n")
    (tmp_path / "per_class.csv").write_text("class,value,count\nx,0.25,1\ny,0.75,2\nz,0.5,1\nw,0.1,3\n")
    ava_figure(tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    return tmp_path


def plots_show(project: Path, out: str) -> Path:
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-q", "-o", out], cwd=project, check=True)
    return project / out / "index.html"


def bars_in(chart: int) -> str:
    return f"document.querySelectorAll('svg.marks')[{chart}].querySelectorAll('g.mark-rect.role-mark path').length"


def test_dvc_plots_show_draws_every_plot_without_a_network(browser, project):
    page = plots_show(project, "plots")
    visit = browser.visit(page.as_uri(), f"{CHARTS} === {VEGA_PLOTS} && {IMAGES} === 1 && [{CHARTS}, {bars_in(2)}]")
    assert visit.value == [VEGA_PLOTS, 4], visit.errors  # every chart drawn, a bar per row of per_class.csv
    assert visit.network_requests() == [] and visit.errors == []
    assert any(u.endswith(".svg") for u in visit.requests)  # the summary figure, from the page's folder

    # DVC's own page, the same plots: its libraries are on a CDN, so nothing is drawn offline
    # (and the check above would have seen it).
    (project / ".dvc/config").write_text("")
    visit = browser.visit(plots_show(project, "cdn").as_uri(), f"document.readyState === 'complete' && [{CHARTS}]")
    assert visit.value == [0]
    assert any("cdn.jsdelivr.net" in u for u in visit.network_requests())
    assert any("vegaEmbed is not defined" in e for e in visit.errors)


def test_a_summary_figure_draws_a_bar_per_value_offline(browser, tmp_path):
    figure = ava_figure(tmp_path)
    svg = tmp_path / "figures" / f"{figure.name}.svg"
    visit = browser.visit(svg.as_uri(), "document.querySelectorAll('g.mark-rect.role-mark path').length")
    assert visit.value == len(figure.rows) == 12
    assert visit.network_requests() == [] and visit.errors == []
    assert non_white_fraction(visit.screenshot) > 0.01  # about 4% of the window: bars, axes, labels
