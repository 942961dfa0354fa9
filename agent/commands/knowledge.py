"""`torchdoctor knowledge [--json] [--check-index] [--index-base URL]`: which facts this copy has
and, with --check-index, what the index publishes that they do not know.

Exit codes: 0 the data knows everything the index publishes (or the index was not asked), 1 the
index publishes a torch release or variant the data does not know (or the index failed: the
usual error codes), 2 bad input (e.g. a plain-http --index-base).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from torchdoctor.agent.args import add_index_base_argument
from torchdoctor.agent.output import display_path, paint, terminal_width, use_colour, wrap, write_json
from torchdoctor.service import paths
from torchdoctor.service.errors import EXIT_ATTENTION, EXIT_OK
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.freshness import (
    IndexNews,
    KnowledgeSummary,
    read_index,
    summarise,
    summary_to_json,
)
from torchdoctor.service.install.index import IndexClient, validate_index_base


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "knowledge",
        help="show the facts this copy decides with, and whether the index knows more",
        description=(
            "Show which torch releases, variants and CUDA versions this copy of torchdoctor knows, and "
            "the date its facts were checked. With --check-index, ask the index what it publishes that "
            "they do not: exit 1 when it publishes more (a stale copy says so instead of deciding quietly)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.add_argument(
        "--check-index", action="store_true", help="compare the facts with what the index publishes"
    )
    add_index_base_argument(parser)
    parser.set_defaults(handler=run)


def render(
    summary: KnowledgeSummary, override: str | None, news: IndexNews | None, *, colour: bool, width: int
) -> list[str]:
    """The text report; pure, so tests read it without a terminal."""
    lines: list[str] = []
    checked = f"checked against their sources {summary.retrieved}" if summary.retrieved else "date unknown"
    lines.append(f"torchdoctor's facts ({checked}):")
    if summary.releases:
        newest = summary.newest_release or summary.releases[-1]
        variants = ", ".join(summary.variants.get(newest, ()))
        lines += wrap(
            f"torch {summary.releases[0]} to {newest} (newest: {variants})", width, first="  releases: "
        )
    lines += wrap(summary.newest_cuda or "none", width, first="  newest CUDA in the driver table: ")
    lines += wrap(override or "none", width, first="  your additions: ")
    if news is None:
        return lines
    lines.append(f"The index {news.index_base} ({news.asked}):")
    if news.up_to_date:
        lines += wrap(
            paint("publishes no torch release or variant these facts do not know.", "green", colour),
            width,
            first="  ",
        )
    else:
        lines += wrap(paint("publishes what these facts do not know:", "yellow", colour), width, first="  ")
        for release, its_variants in news.new_releases:
            text = f"torch {release} ({', '.join(its_variants)})"
            lines += wrap(text, width, first="   - ", rest="     ")
        for new_variant, versions in news.new_variants:
            text = f"{new_variant} for torch {', '.join(versions)}"
            lines += wrap(text, width, first="   - ", rest="     ")
        lines += wrap(
            "Plans still follow the index and the wheels' own metadata, but check's verdicts and "
            "hand commands cannot know these yet: update torchdoctor, or add the facts to "
            f"{display_path(paths.knowledge_override_file())}.",
            width,
            first="  ",
        )
    for variant, toolkit in news.variant_cuda.items():
        lines += wrap(f"{variant} is built with CUDA {toolkit} (its wheel's METADATA)", width, first="   - ")
    for note in news.notes:
        lines += wrap(note, width, first="  note: ", rest="        ")
    return lines


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    index_base = validate_index_base(args.index_base)  # bad input is exit 2 before anything else
    knowledge = load_knowledge()
    override_path = paths.knowledge_override_file()
    override = str(override_path) if override_path.is_file() else None
    news = read_index(knowledge, IndexClient(index_base)) if args.check_index else None
    summary = summarise(knowledge)
    if args.json:
        write_json(summary_to_json(summary, override, news), out)
    else:
        for line in render(summary, override, news, colour=use_colour(out), width=terminal_width()):
            out.write(line + "\n")
    return EXIT_ATTENTION if news is not None and not news.up_to_date else EXIT_OK
