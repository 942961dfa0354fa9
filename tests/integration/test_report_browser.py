"""The report in a real browser: headless Chromium loads each page from disk, and the page makes
no request, logs no error, runs no injected script, sorts, fits a phone's width and prints.

Screenshots at 1280 and 400 CSS pixels wide are kept in .cache/artifacts/report/ for a person to
look at (the CI log names them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import report_docs as rd
from tests.support.chromium import Page, browser, require_chromium
from torchdoctor.agent.report.documents import document_from_json
from torchdoctor.agent.report.model import DriverEvent, FixEvent, LocalHistory, Unreadable
from torchdoctor.agent.report.render import render_fleet, render_machine

ARTIFACTS = Path(__file__).resolve().parents[2] / ".cache" / "artifacts" / "report"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def machine_html() -> str:
    h = rd.HOSTILE
    envs = [
        rd.environment("/home/ana/vision/.venv", "broken", torch="2.5.1+cu124", codes=(0,)),
        rd.environment(f"/home/ana/{h}/.venv", "warn", codes=(4,)),
        rd.environment(
            "/home/ana/a-project-with-a-very-long-name-that-has-to-wrap-somewhere/.venv", "ok", codes=(5,)
        ),
        rd.environment("/usr", "no-torch", torch=None),
    ]
    doc = document_from_json(rd.document(1, environments=envs), name="ana-workstation", source="")
    changed = datetime(2026, 10, 2, 8, 15, tzinfo=UTC)
    local = LocalHistory(
        bench=(
            rd.bench_history("/home/ana/vision/.venv", days=120, fail_every=30),
            rd.bench_history(f"/home/ana/{h}/.venv", days=6),
        ),
        fixes=(
            FixEvent(
                changed,
                "/home/ana/vision/.venv",
                "torch==2.7.1+cu128 torchvision==0.22.1+cu128",
                "installed",
                None,
                "/home/ana/.local/state/torchdoctor/log/fix-20261002T081500Z-.venv.log",
            ),
            FixEvent(
                NOW,
                f"/home/ana/{h}/.venv",
                "torch==2.7.1+cu128",
                "failed, restored",
                f"the new build failed verification: {h}; torch 2.5.1+cu124 was restored exactly",
                "fix-2.log",
            ),
        ),
        drivers=(DriverEvent(changed, "566.03", "572.16"),),
        driver_now="572.16",
        driver_checked_at="2026-12-01T11:30:00Z",
    )
    return render_machine(
        doc, local, generated_at=NOW, version="0.1.0", log_dir="~/.local/state/torchdoctor/log"
    )


def fleet_html() -> str:
    docs = [
        document_from_json(d, name=f"gpu-node-{i:03}", source=f"/fleet/gpu-node-{i:03}.json", modified=NOW)
        for i, d in enumerate(rd.fleet(60))
    ]
    bad = rd.document(
        0, environments=[rd.environment(f"/{rd.HOSTILE}", "broken", torch=rd.HOSTILE, codes=(2,))]
    )
    docs.append(document_from_json(bad, name=rd.HOSTILE, source=f"/fleet/{rd.HOSTILE}.json", modified=NOW))
    unreadable = [
        Unreadable(
            "/fleet/gpu-node-900.json",
            "not valid JSON (Expecting ',' delimiter, line 1 column 4097; the file looks truncated)",
        ),
        Unreadable(
            f"/fleet/{rd.HOSTILE}.json", "written by a newer torchdoctor (schema_version 2; this one reads 1)"
        ),
    ]
    return render_fleet(docs, unreadable, generated_at=NOW, version="0.1.0")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_chromium()
    folder = tmp_path_factory.mktemp("report-pages")
    written = {}
    for name, html in (("machine", machine_html()), ("fleet", fleet_html())):
        path = folder / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        written[name] = path
    return written


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    require_chromium()
    with browser(tmp_path_factory.mktemp("chromium")) as instance:
        yield Page(instance)


@pytest.mark.parametrize("name", ["machine", "fleet"])
def test_the_page_loads_from_disk_with_no_request_no_error_and_no_injected_script(
    chromium: Page, pages: dict[str, Path], name: str
) -> None:
    chromium.log.requests.clear()
    chromium.log.problems.clear()
    chromium.open(pages[name], width=1280)
    assert chromium.log.requests == [pages[name].absolute().as_uri()]
    assert chromium.log.problems == []
    assert chromium.log.dialogs == []
    # The hostile strings are on the page as text, and no element came out of them.
    assert chromium.evaluate(f"document.body.innerText.includes({rd.HOSTILE!r})") is True
    assert chromium.evaluate("document.querySelectorAll('script').length") == 1
    assert chromium.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    # Our script did run under the page's CSP: the copy buttons it reveals are showing.
    assert chromium.evaluate("document.querySelectorAll('button.copy:not([hidden])').length") > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 400):
        shot = chromium.screenshot(ARTIFACTS / f"{name}-{width}.png", width=width)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    assert chromium.log.problems == []


@pytest.mark.parametrize("name", ["machine", "fleet"])
def test_the_page_fits_a_phone_without_scrolling_sideways(
    chromium: Page, pages: dict[str, Path], name: str
) -> None:
    chromium.open(pages[name], width=400)
    assert chromium.evaluate("document.documentElement.scrollWidth") <= 400


def test_a_fleet_table_sorts_by_a_column_and_back(chromium: Page, pages: dict[str, Path]) -> None:
    chromium.open(pages["fleet"], width=1280)
    first_column = "Array.from(document.querySelectorAll('#machines + p + .table-wrap tbody tr td:first-child')).map(td => td.textContent)"
    before = chromium.evaluate(first_column)
    click = "document.querySelectorAll('#machines + p + .table-wrap thead th button')[{}].click()"
    chromium.evaluate(click.format(0))
    ascending = chromium.evaluate(first_column)
    assert ascending == sorted(before)
    assert ascending != before  # the server's order is by group, not by name
    chromium.evaluate(click.format(0))
    assert chromium.evaluate(first_column) == ascending[::-1]
    # Status sorts by severity (its rank), not alphabetically: broken first.
    chromium.evaluate(click.format(1))
    statuses = chromium.evaluate(
        "Array.from(document.querySelectorAll('#machines + p + .table-wrap tbody tr td:nth-child(2)')).map(td => td.innerText.trim())"
    )
    order = {"broken": 0, "warn": 1, "ok": 2}
    ranks = [order[s.split()[-1]] for s in statuses]
    assert ranks == sorted(ranks)
    assert chromium.log.problems == []


def test_the_machine_page_prints(chromium: Page, pages: dict[str, Path]) -> None:
    chromium.open(pages["machine"], width=1280)
    pdf = chromium.pdf()
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 20_000
    assert chromium.log.problems == []
