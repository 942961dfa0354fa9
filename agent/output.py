"""Writing results: JSON for machines, tables and colour for people."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Final, TextIO

_COLOURS: Final = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1", "cyan": "36"}


def write_json(payload: object, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    json.dump(payload, out, indent=2, ensure_ascii=False)
    out.write("\n")


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str, enabled: bool) -> str:
    if not enabled or colour not in _COLOURS:
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str],
    *,
    widths_from_plain: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """Left-aligned columns. `widths_from_plain` gives the uncoloured cells when `rows` hold colour codes."""
    plain = widths_from_plain if widths_from_plain is not None else rows
    widths = [len(h) for h in header]
    for row in plain:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(header)).rstrip()]
    for row, prow in zip(rows, plain, strict=True):
        cells = [cell + " " * (widths[i] - len(prow[i])) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def human_size(size: int | None) -> str:
    """1536 -> "1.5 KiB"; None -> "size unknown"."""
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
