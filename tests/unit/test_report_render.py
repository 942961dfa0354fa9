"""The report's HTML over the JSON contract: hostile strings stay text, empty histories say so,
500 machines and a mix of good and broken documents render, and nothing in the page can fetch."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from tests.support import report_docs as rd
from torchdoctor.agent.report.charts import bench_chart, sanitise_svg
from torchdoctor.agent.report.documents import document_from_json
from torchdoctor.agent.report.model import (
    BenchPoint,
    BenchSeries,
    DriverEvent,
    FixEvent,
    LocalHistory,
    MachineDoc,
    Unreadable,
)
from torchdoctor.agent.report.render import (
    attention,
    commands_in,
    finding_counts,
    fleet_groups,
    render_fleet,
    render_machine,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LINK_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "data", "poster", "srcset"}


class Page(HTMLParser):
    """What a browser would build: elements with their attributes, script bodies and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def assert_inert(html: str) -> Page:
    """Our one script, allowed by hash in the CSP; no handler attribute; no link out of the page."""
    page = Page(html)
    assert len(page.scripts) == 1
    (meta,) = [a for a in page.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode("utf-8")).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in (meta["content"] or "")
    assert "default-src 'none'" in (meta["content"] or "")
    for tag, attrs in page.elements:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in LINK_ATTRS & set(attrs):
            assert (attrs[name] or "").startswith("#"), (tag, name, attrs[name])
        assert tag not in ("img", "iframe", "object", "embed", "link", "foreignobject"), tag
    return page


def hostile_machine() -> tuple[MachineDoc, LocalHistory]:
    h, attr = rd.HOSTILE, rd.HOSTILE_ATTR
    env = rd.environment(f"/home/{h}/.venv", "broken", torch=f"2.5.1+{attr}", codes=(0,))
    env["findings"][0]["message"] = f"{attr} {h}"
    env["findings"][0]["fix"] = f"run `torchdoctor fix --env /home/{h}/.venv`, or by hand: {attr}"
    data = rd.document(0, environments=[env])
    data["hardware"]["gpus"][0]["name"] = h
    data["hardware"]["driver_version"] = attr
    data["notes"] = [h]
    doc = document_from_json(data, name=h, source="")
    local = LocalHistory(
        bench=(rd.bench_history(f"/home/{h}", days=10, fail_every=3),),
        fixes=(FixEvent(NOW, h, attr, "installed", h, f"/logs/{h}.log"),),
        drivers=(DriverEvent(NOW, h, attr),),
        driver_now=attr,
        driver_checked_at=h,
        notes=(h,),
    )
    return doc, local


def test_hostile_strings_in_every_field_of_a_machine_page_stay_text() -> None:
    doc, local = hostile_machine()
    html = render_machine(doc, local, generated_at=NOW, version="0.1.0", log_dir=rd.HOSTILE)
    page = assert_inert(html)
    assert rd.HOSTILE not in html  # never raw markup...
    assert page.all_text.count(rd.HOSTILE) >= 8  # ...but shown, as the text it is
    assert rd.HOSTILE_ATTR in page.all_text
    # The copy button copies the command as the environment's path really is.
    codes = re.findall(r"<code>(.*?)</code>", html)
    assert "torchdoctor fix --env /home/&lt;script&gt;alert(1)&lt;/script&gt;/.venv" in codes


def test_hostile_strings_in_a_fleet_page_stay_text() -> None:
    h = rd.HOSTILE
    data = rd.document(2, environments=[rd.environment(f"/{h}", "warn", torch=h, codes=(4,))])
    data["hardware"]["gpus"][0]["name"] = rd.HOSTILE_ATTR
    data["environments"][0]["findings"][0]["code"] = h
    docs = [document_from_json(data, name=h, source=f"/f/{h}.json", modified=NOW)]
    html = render_fleet(docs, [Unreadable(f"/f/{h}", h)], generated_at=NOW, version="0.1.0")
    page = assert_inert(html)
    assert rd.HOSTILE not in html
    assert page.all_text.count(h) >= 6


def test_the_chart_drops_what_could_run_or_fetch() -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">'
        "<defs><script>alert(2)</script><linearGradient id='g'/></defs>"
        '<a href="javascript:alert(3)"><text onclick="alert(4)">&lt;script&gt;</text></a>'
        '<image xlink:href="https://example.com/x.png"/><use xlink:href="#g"/><use href="https://e/x#y"/>'
        "<foreignObject><div>html</div></foreignObject></svg>"
    )
    clean = sanitise_svg(svg)
    assert "alert" not in clean
    assert "example.com" not in clean
    assert "foreignObject" not in clean
    assert "&lt;script&gt;" in clean
    assert 'xlink:href="#g"' in clean
    assert "https://e/x" not in clean


def test_the_benchmark_chart_is_pygal_svg_without_pygals_scripts() -> None:
    series = rd.bench_history(rd.HOSTILE, days=30, fail_every=7)
    svg = bench_chart(series, title=rd.HOSTILE)
    assert svg is not None
    assert svg.startswith("<svg")
    assert "<script" not in svg
    assert "kozea.github.io" not in svg  # pygal's default tooltip script from its CDN
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    for label in ("FP16 TFLOP/s", "datasheet peak", "failed run"):
        assert label in svg


def test_a_history_of_only_failures_still_charts_and_no_runs_chart_nothing() -> None:
    failing = rd.bench_history("/p", days=3, fail_every=1)
    svg = bench_chart(failing, title="t")
    assert svg is not None
    assert "failed run" in svg
    assert "FP16 TFLOP/s" not in svg


def test_an_environment_benchmarked_on_the_cpu_charts_gflops() -> None:
    """`bench --device cpu` (and a CPU build) measures matmul_fp32_gflops: its own unit, its own chart."""
    start = datetime(2026, 5, 1, tzinfo=UTC)
    points = tuple(
        BenchPoint(start + timedelta(days=d), d != 2, "cpu", None, "2.13.0+cpu",
                   {"matmul_fp32_gflops": 12.0 + d} if d != 2 else {}, {}, None if d != 2 else "slow")
        for d in range(4)
    )  # fmt: skip
    svg = bench_chart(BenchSeries("/cpu-env", points), title="t")
    assert svg is not None
    assert "CPU FP32 GFLOP/s" in svg
    assert "TFLOP/s" not in svg
    assert "failed run" in svg
    doc = document_from_json(
        rd.document(0, environments=[rd.environment("/cpu-env", "ok")]), name="m", source=""
    )
    html = render_machine(
        doc, LocalHistory(bench=(BenchSeries("/cpu-env", points),)), generated_at=NOW, version="t"
    )
    text = " ".join(Page(html).all_text.split())
    assert "CPU FP32 GFLOP/s" in text
    assert "15" in text  # the newest run's figure, in the table


def test_empty_history_and_no_environment_say_so_in_words() -> None:
    data = rd.document(0, environments=[])
    doc = document_from_json(data, name="empty", source="")
    html = render_machine(doc, LocalHistory(), generated_at=NOW, version="0.1.0")
    text = " ".join(assert_inert(html).all_text.split())
    assert "No Python environment was found" in text
    assert "No benchmark has been recorded on this machine yet" in text
    assert "No fix has been run on this machine" in text
    assert "The tray has not recorded a driver on this machine" in text
    assert "<svg" not in html


def test_the_machine_page_shows_every_part_of_the_history() -> None:
    env = rd.environment("/home/ana/proj/.venv", "ok")
    doc = document_from_json(rd.document(0, environments=[env]), name="ana", source="")
    changed = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    local = LocalHistory(
        bench=(rd.bench_history("/home/ana/proj/.venv", days=60, fail_every=20),),
        fixes=(
            FixEvent(changed, "/home/ana/proj/.venv", "torch==2.7.1+cu128", "failed, restored", "why", "l"),
        ),
        drivers=(DriverEvent(changed, "560.94", "570.86.15"),),
        driver_now="570.86.15",
        driver_checked_at="2026-12-01T11:00:00Z",
    )
    html = render_machine(doc, local, generated_at=NOW, version="0.1.0")
    text = " ".join(assert_inert(html).all_text.split())
    assert "60 runs, 3 failed" in text
    # The last run (day 60) failed and measured nothing: the figures are the day before's.
    last_run = html.split('id="benchmarks"', 1)[1]
    assert "2026-01-29 03:00 UTC" in last_run  # the last run
    assert "2026-01-28 03:00 UTC" in last_run  # whose figures are shown
    assert "of peak)" in text
    assert "failed, restored" in text
    assert (
        "The tray last saw driver 570.86.15 at 2026-12-01T11:00:00Z, in use since 2026-11-03 09:30 UTC"
        in text
    )
    assert "NVIDIA H100 80GB HBM3" in text
    assert "9.0 (sm_90)" in text
    assert html.count("<svg") == 1


def test_environments_are_shown_worst_first() -> None:
    envs = [
        rd.environment(f"/e/{s}", s, codes=c)
        for s, c in (("ok", ()), ("no-torch", ()), ("broken", (1,)), ("warn", (4,)))
    ]
    doc = document_from_json(rd.document(0, environments=envs), name="m", source="")
    html = render_machine(doc, LocalHistory(), generated_at=NOW, version="0.1.0")
    order = re.findall(r'<h3 class="path">/e/([a-z-]+)</h3>', html)
    assert order == ["broken", "warn", "ok", "no-torch"]


def _fleet_docs(n: int) -> list[MachineDoc]:
    return [
        document_from_json(d, name=f"node-{i:04}", source=f"/f/node-{i:04}.json", modified=NOW)
        for i, d in enumerate(rd.fleet(n))
    ]


def test_500_machines_render_with_every_machine_and_the_counts_right() -> None:
    docs = _fleet_docs(500)
    html = render_fleet(docs, [], generated_at=NOW, version="0.1.0")
    page = assert_inert(html)
    machines_table = html.split('id="machines"', 1)[1].split('id="attention"', 1)[0]
    assert machines_table.count("<tr><td") == 500
    groups = fleet_groups(docs)
    assert sum(len(g.machines) for g in groups) == 500
    assert len(groups) == len({(d.hardware.gpu_model, d.hardware.driver_version) for d in docs})
    for group in groups:  # worst first within a group
        ranks = [{"broken": 0, "warn": 1, "ok": 2}[m.status] for m in group.machines]
        assert ranks == sorted(ranks)
    needing = [(d.name, e.path) for d in docs for e in d.environments if e.status in ("warn", "broken")]
    assert sorted((d.name, e.path) for d, e in attention(docs)) == sorted(needing)
    counted = {(c.code, c.severity): (c.environments, c.machines) for c in finding_counts(docs)}
    for (code, severity), (n_envs, n_machines) in counted.items():
        with_it = [
            (d.name, e.path)
            for d in docs
            for e in d.environments
            if any(f.code == code and f.severity == severity for f in e.findings)
        ]
        assert n_envs == len(with_it)
        assert n_machines == len({name for name, _ in with_it})
    assert f"{len(needing)})" in page.all_text  # the attention heading's count


def test_a_mix_of_good_and_broken_documents_lists_the_broken_and_renders_the_rest() -> None:
    docs = _fleet_docs(3)
    bad = [
        Unreadable(
            "/f/cut.json",
            "not valid JSON (Expecting ',' delimiter, line 1 column 900; the file looks truncated)",
        ),
        Unreadable("/f/new.json", "written by a newer torchdoctor (schema_version 2; this one reads 1)"),
    ]
    html = render_fleet(docs, bad, generated_at=NOW, version="0.1.0")
    text = " ".join(assert_inert(html).all_text.split())
    assert "3 machines from 5 documents; 2 could not be read" in text
    assert "Documents that could not be read (2)" in text
    for item in bad:
        assert item.source in text
        assert item.reason in text
    for doc in docs:
        assert doc.name in text


def test_a_clean_fleet_says_nothing_needs_attention() -> None:
    docs = [document_from_json(rd.document(i % 4), name=f"n{i}", source=f"n{i}") for i in range(4)]
    text = " ".join(Page(render_fleet(docs, [], generated_at=NOW, version="0.1.0")).all_text.split())
    assert "None: every environment in the fleet is ok" in text
    assert "Documents that could not be read" not in text


def test_commands_in_a_fix_text() -> None:
    fix = "run `torchdoctor fix --env '/a b'` (why), or by hand: /x/python -m pip install torch==2.7.1+cu128 --index-url U"
    assert commands_in(fix) == [
        "torchdoctor fix --env '/a b'",
        "/x/python -m pip install torch==2.7.1+cu128 --index-url U",
    ]
    assert commands_in("nothing needs doing (`torchdoctor fix --env /p` keeps this build)") == [
        "torchdoctor fix --env /p"
    ]
    assert commands_in("add `driver_version` to the hardware file") == []


def test_the_page_is_one_file_that_json_can_carry() -> None:
    """Self-contained: everything inline, so a ticket system can attach the one file."""
    doc, local = hostile_machine()
    html = render_machine(doc, local, generated_at=NOW, version="0.1.0")
    assert json.loads(json.dumps(html)) == html
    assert "<link" not in html
    assert "@import" not in html
    assert "url(" not in html
