"""The report's HTML: documents and histories in, one self-contained page out. Pure.

Jinja2 autoescapes every value; the only markup that is not escaped is ours: the inline script
(whose hash the page's Content-Security-Policy names, so nothing else can run) and the charts,
which charts.py sanitises. Tables start in a useful order (worst first, grouped) so the page reads
without script and on paper; the script only adds sorting and copy buttons.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Final

import jinja2
from markupsafe import Markup

from torchdoctor.agent.report.model import (
    CPU_FIGURES,
    FIGURES,
    STATUS_RANK,
    BenchPoint,
    BenchSeries,
    EnvView,
    LocalHistory,
    MachineDoc,
    Unreadable,
)

_TEMPLATES: Final = ("base.html.j2", "macros.html.j2", "machine.html.j2", "fleet.html.j2")
_SEVERITY_RANK: Final = {"error": 0, "warn": 1, "info": 2}
_BACKTICKED: Final = re.compile(r"`([^`]+)`")
_BY_HAND: Final = "or by hand: "
_TABLE_FIGURES: Final = {
    **{k: f"{v} TFLOP/s" for k, v in FIGURES.items()},
    **{k: f"{v} GFLOP/s" for k, v in CPU_FIGURES.items()},
    "device_memory_gbps": "Memory GB/s",
}


@dataclass(frozen=True, slots=True)
class Group:
    gpu_model: str
    driver: str | None
    cuda: str | None
    machines: tuple[MachineDoc, ...]

    @property
    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(("ok", "warn", "broken"), 0)
        for machine in self.machines:
            found[machine.status] += 1
        return found


@dataclass(frozen=True, slots=True)
class FindingCount:
    code: str
    severity: str
    severity_rank: int
    environments: int
    machines: int


@dataclass(frozen=True, slots=True)
class BenchView:
    env: str
    runs: int
    failed: int
    last: BenchPoint
    measured: BenchPoint | None  # the newest run with figures: a failed last run may have none
    columns: tuple[str, ...]
    values: tuple[str, ...]
    chart: Markup | None


# --- pure helpers the templates use ---------------------------------------------------------------


def commands_in(fix: str) -> list[str]:
    """The commands a finding's fix text names (what gets a copy button): its backticked commands
    and the hand command after "or by hand: " (service/rules/diagnose.py writes them so)."""
    found = [
        c for c in _BACKTICKED.findall(fix) if c.startswith(("torchdoctor ", "conda ")) or " install " in c
    ]
    if _BY_HAND in fix:
        tail = fix.split(_BY_HAND, 1)[1].strip()
        if tail and tail not in found:
            found.append(tail)
    return found


def first_commands(env: EnvView) -> list[str]:
    """The fleet table's fix column: the first command of the environment's worst finding (one
    per row keeps a thousand-machine table short; the machine's own report has them all)."""
    worst = sorted(env.findings, key=lambda f: _SEVERITY_RANK.get(f.severity, 9))
    return commands_in(worst[0].fix)[:1] if worst else []


def when(value: datetime | None) -> str:
    if value is None:
        return "unknown"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _figure(value: float, peak: float | None) -> str:
    text = f"{value:.4g}"
    return f"{text} ({value / peak:.0%} of peak)" if peak else text


def fleet_groups(docs: Iterable[MachineDoc]) -> list[Group]:
    """Machines grouped by GPU model and driver; groups by model then driver, machines worst first."""
    grouped: dict[tuple[str, str | None, str | None], list[MachineDoc]] = {}
    for doc in docs:
        hw = doc.hardware
        grouped.setdefault((hw.gpu_model, hw.driver_version, hw.cuda_driver_version), []).append(doc)
    return [
        Group(model, driver, cuda, tuple(sorted(machines, key=lambda m: (STATUS_RANK[m.status], m.name))))
        for (model, driver, cuda), machines in sorted(
            grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        )
    ]


def attention(docs: Iterable[MachineDoc]) -> list[tuple[MachineDoc, EnvView]]:
    rows = [(doc, env) for doc in docs for env in doc.environments if env.needs_attention]
    return sorted(rows, key=lambda r: (STATUS_RANK[r[1].status], r[0].name, r[1].path))


def finding_counts(docs: Iterable[MachineDoc]) -> list[FindingCount]:
    envs: dict[tuple[str, str], int] = {}
    machines: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        for env in doc.environments:
            for key in {(f.code, f.severity) for f in env.findings}:
                envs[key] = envs.get(key, 0) + 1
                machines.setdefault(key, set()).add(doc.source)
    counts = [
        FindingCount(code, severity, _SEVERITY_RANK.get(severity, 9), n, len(machines[(code, severity)]))
        for (code, severity), n in envs.items()
    ]
    return sorted(counts, key=lambda c: (c.severity_rank, -c.environments, c.code))


def bench_views(series: Sequence[BenchSeries]) -> list[BenchView]:
    if not series:
        return []
    # Only here: pygal takes a fifth of a second to import, and a fleet page draws no chart.
    from torchdoctor.agent.report.charts import bench_chart  # noqa: PLC0415

    views = []
    for s in series:
        if not s.points:
            continue
        last = s.points[-1]
        measured = next((p for p in reversed(s.points) if p.figures), None)
        figures = measured.figures if measured is not None else {}
        peaks = measured.peaks if measured is not None else {}
        keys = [k for k in _TABLE_FIGURES if k in figures]
        chart = bench_chart(s, title="Speed per run")
        views.append(
            BenchView(
                env=s.env,
                runs=len(s.points),
                failed=sum(1 for p in s.points if not p.passed),
                last=last,
                measured=measured,
                columns=tuple(_TABLE_FIGURES[k] for k in keys),
                values=tuple(_figure(figures[k], peaks.get(k)) for k in keys),
                # Sanitised by charts.sanitise_svg: no script, no event attribute, no outside link.
                chart=Markup(chart) if chart is not None else None,  # noqa: S704
            )
        )
    return views


def _summary(doc: MachineDoc) -> str:
    counts = doc.counts
    parts = [f"{counts[s]} {s}" for s in ("broken", "warn", "ok", "no-torch") if counts[s]]
    n = len(doc.environments)
    return f"{n} environment{'s' if n != 1 else ''}" + (f": {', '.join(parts)}." if parts else ".")


# --- the Jinja environment ----------------------------------------------------------------------


@functools.cache
def _script() -> tuple[Markup, str]:
    text = (resources.files(__package__) / "templates" / "report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"sha256-{digest}"  # noqa: S704 - our own file, never data


@functools.cache
def _environment() -> jinja2.Environment:
    folder = resources.files(__package__) / "templates"
    env = jinja2.Environment(
        loader=jinja2.DictLoader({name: (folder / name).read_text(encoding="utf-8") for name in _TEMPLATES}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["commands"] = commands_in
    env.filters["first_commands"] = first_commands
    return env


def _page(template: str, *, generated_at: datetime, version: str, **context: object) -> str:
    script, script_hash = _script()
    return (
        _environment()
        .get_template(template)
        .render(generated_at=generated_at, version=version, script=script, script_hash=script_hash, **context)
    )


def render_machine(
    doc: MachineDoc,
    history: LocalHistory,
    *,
    generated_at: datetime,
    version: str,
    log_dir: str | None = None,
) -> str:
    """One machine: hardware, environments (worst first), benchmark, fix and driver history."""
    since = next(
        (d.at for d in reversed(history.drivers) if history.driver_now and d.new == history.driver_now), None
    )
    return _page(
        "machine.html.j2",
        generated_at=generated_at,
        version=version,
        doc=doc,
        summary=_summary(doc),
        environments=sorted(doc.environments, key=lambda e: STATUS_RANK[e.status]),
        benches=bench_views(history.bench),
        history=history,
        since=since,
        log_dir=log_dir,
    )


def render_fleet(
    docs: Sequence[MachineDoc], unreadable: Sequence[Unreadable], *, generated_at: datetime, version: str
) -> str:
    """Many machines: groups by GPU model and driver, what needs attention, findings counted."""
    overall = dict.fromkeys(("broken", "warn", "ok"), 0)
    for doc in docs:
        overall[doc.status] += 1
    return _page(
        "fleet.html.j2",
        generated_at=generated_at,
        version=version,
        machines=docs,
        unreadable=unreadable,
        overall=[(s, n) for s, n in overall.items() if n],
        groups=fleet_groups(docs),
        attention=attention(docs),
        findings=finding_counts(docs),
        rank=STATUS_RANK,
    )
