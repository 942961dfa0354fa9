"""The benchmark chart: pygal draws it, and what reaches the page is sanitised SVG. Pure.

pygal always embeds a `<script>` with the chart's data (labels included, which come from
environments) and, by default, links its tooltip script from a CDN. The page must make no request
and run no script it did not write, so the SVG is parsed back and every script, event attribute
and non-local link is dropped; text stays escaped because ElementTree writes it. The chart is
readable without script: lines, dots, a legend and axes are plain SVG.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Final

import pygal
from pygal.etree import etree as pygal_etree
from pygal.style import Style

from torchdoctor.agent.report.model import CPU_FIGURES, FIGURES, BenchSeries

SVG_NS: Final = "http://www.w3.org/2000/svg"
XLINK_NS: Final = "http://www.w3.org/1999/xlink"
# Okabe-Ito: told apart with colour-blindness too; the peaks are grey and dashed, failed runs
# vermilion dots on the zero line, so no meaning rests on colour alone.
_COLOURS: Final = ("#0072B2", "#009E73", "#CC79A7", "#E69F00")
_FAILED_COLOUR: Final = "#D55E00"
_PEAK_COLOUR: Final = "#6E7781"

# pygal builds its tree with lxml when lxml is importable; ours is the standard library's, so that
# the sanitiser and the serialiser see one API.
pygal_etree.to_etree()
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


def _date(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def bench_chart(series: BenchSeries, *, title: str) -> str | None:
    """TFLOP/s per dtype over time for one environment, failed runs marked, the GPU's datasheet
    peak of each dtype as a grey dashed line; None when there is no figure or failure to show.
    An environment benchmarked only on the CPU gets its GFLOP/s instead: one unit per chart."""
    on_gpu = any(k in p.figures for p in series.points for k in FIGURES)
    figures, unit = (FIGURES, "TFLOP/s") if on_gpu else (CPU_FIGURES, "GFLOP/s")
    lines: list[tuple[str, list[tuple[datetime, float]]]] = []
    colours: list[str] = []
    # Every peak in one dashed series, interrupted between figures: pygal's cost is per series
    # (about 6 ms each), and a machine's page has a chart per environment.
    peaks: list[tuple[datetime, float | None]] = []
    span = (series.points[0].at, series.points[-1].at) if series.points else None
    for i, (key, label) in enumerate(figures.items()):
        points = [(p.at, p.figures[key]) for p in series.points if p.passed and key in p.figures]
        if not points:
            continue
        lines.append((f"{label} {unit}", points))
        colours.append(_COLOURS[i % len(_COLOURS)])
        peak = next((p.peaks[key] for p in reversed(series.points) if key in p.peaks), None)
        if peak is not None and span is not None:
            peaks.extend([(span[0], peak), (span[1], peak), (span[1], None)])
    failed = [p for p in series.points if not p.passed]
    if not lines and not failed:
        return None
    style = Style(
        background="transparent",
        plot_background="transparent",
        foreground="#222",
        foreground_strong="#111",
        foreground_subtle="#888",
        colors=(*colours, *((_PEAK_COLOUR,) if peaks else ()), _FAILED_COLOUR),
        font_family="system-ui, sans-serif",
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=12,
        title_font_size=14,
        # Quiet solid guides: the dashes mean "datasheet peak" on this chart, nothing else.
        guide_stroke_color="#e3e6ea",
        major_guide_stroke_color="#c9ced4",
        guide_stroke_dasharray="0",
        major_guide_stroke_dasharray="0",
    )
    chart = pygal.DateTimeLine(
        style=style,
        title=title,
        width=720,
        height=300,
        explicit_size=False,  # a viewBox only: the page's CSS sizes it, on a phone and on paper
        js=[],
        disable_xml_declaration=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=4,
        # Dots cost a node and a tooltip each; lines carry the trend, dots only a sparse history.
        show_dots=len(series.points) <= 12,
        dots_size=3,
        x_value_formatter=_date,
        x_label_rotation=0,
        truncate_label=-1,
        truncate_legend=-1,
        y_title=unit,
        include_x_axis=True,
        print_values=False,
    )
    # Our own date ticks, evenly over the span: pygal's automatic ones can land on top of each other.
    chart.x_labels = date_ticks(series.points[0].at, series.points[-1].at)
    for label, points in lines:
        chart.add(label, points)
    if peaks:
        chart.add(
            "datasheet peak",
            peaks,
            stroke_style={"width": 1.5, "dasharray": "6, 4"},
            show_dots=False,
            allow_interruptions=True,
        )
    if failed:
        # Where a failed run measured nothing (in this chart's unit), its dot sits on the zero line.
        chart.add(
            "failed run",
            [(p.at, max((p.figures[k] for k in figures if k in p.figures), default=0.0)) for p in failed],
            stroke=False,
            show_dots=True,
            dots_size=5,
        )
    # The tree itself: one serialisation, after sanitising, instead of a string parsed back.
    return _serialise(sanitise_tree(chart.render_tree()))


def date_ticks(first: datetime, last: datetime, *, count: int = 6) -> list[datetime]:
    """Up to `count` evenly spaced instants from `first` to `last`, fewer when they are days apart."""
    span = last - first
    days = span.days
    if days < 1:
        return [first]
    steps = min(count - 1, days)
    return [first + span * i / steps for i in range(steps + 1)]


def sanitise_svg(svg: str) -> str:
    """`sanitise_tree` over SVG text."""
    return _serialise(sanitise_tree(ET.fromstring(svg)))  # noqa: S314 - pygal's output, made in this process


def sanitise_tree(root: ET.Element) -> ET.Element:
    """The SVG without anything that runs or fetches: <script>, <foreignObject>, on* attributes,
    and links that leave the document (only `#fragment` hrefs stay)."""
    for parent in root.iter():
        for child in list(parent):
            tag = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
            if tag in ("script", "foreignObject", "iframe", "use") and not _local_use(child, tag):
                parent.remove(child)
        for name in list(parent.attrib):
            local = name.rsplit("}", 1)[-1].lower()
            value = parent.attrib[name].strip()
            if local.startswith("on") or (local == "href" and not value.startswith("#")):
                del parent.attrib[name]
    return root


def _serialise(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def _local_use(element: ET.Element, tag: str) -> bool:
    if tag != "use":
        return False
    href = element.get(f"{{{XLINK_NS}}}href") or element.get("href") or ""
    return href.startswith("#")
