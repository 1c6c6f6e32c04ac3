"""Write the page `dvc plots show` fills, with Vega, Vega-Lite and Vega-Embed inside it.

    python scripts/plots_page.py           rewrite .dvc/plots_page.html
    python scripts/plots_page.py --check   exit 1 if it differs from what the installed
                                           vl-convert-python makes

.dvc/config names the page (plots.html_template), so a plain `dvc plots show` draws on a
machine without a network. The page is committed (a fresh clone draws at once); rerun this
after changing the pinned vl-convert-python (tests/test_figures.py checks it is current).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsf.io.atomic import atomic_output  # noqa: E402
from pipeline.vega import PAGE_TEMPLATE, dvc_page_template, versions  # noqa: E402


@click.command()
@click.option("--check", is_flag=True, help="Only compare: exit 1 if the committed page is not current.")
def main(check: bool) -> None:
    path = REPO / PAGE_TEMPLATE
    page = dvc_page_template()
    made_by = ", ".join(f"{k} {v}" for k, v in versions().items())
    if check:
        current = path.is_file() and path.read_text(encoding="utf8") == page
        click.echo(f"{PAGE_TEMPLATE}: {'current' if current else 'NOT current: run python scripts/plots_page.py'} "
                   f"({made_by})")
        sys.exit(0 if current else 1)
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf8")
    click.echo(f"{PAGE_TEMPLATE}: {len(page) / 1e6:.2f} MB ({made_by})")


if __name__ == "__main__":
    main()
