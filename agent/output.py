"""Writing results: JSON for machines; tables, wrapped text and colour for people.

Human output fits the terminal (`terminal_width`): table cells that do not fit are shortened with
"…" (paths in the middle, text at the end) or wrapped in their column, free text wraps with a
hanging indent, and the home folder reads `~`. Commands a person is told to run (a `backtick`
span, or an install command after ": ") and URLs are never cut or rewritten: such a token moves
to a line of its own and only it may run past the width. JSON is written as is, paths in full.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

_COLOURS: Final = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1", "cyan": "36"}

DEFAULT_WIDTH: Final = 80  # a pipe, a file, or a terminal that does not say (shutil's fallback)
MIN_WIDTH: Final = 20  # below this nothing readable fits; lay out for 20 and let the terminal wrap
ELLIPSIS: Final = "…"

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# One wrapping unit: a run of non-space characters, where a `backtick span` counts as one
# character however many spaces it holds ("(`torchdoctor fix --env /x`)." is one unit).
_TOKEN: Final = re.compile(r"(?:[^\s`]|`[^`]*`)+|`")
# An install command written without backticks after "by hand: ", "optional: " ...: a python
# running a module (`/env/bin/python -m pip install ...`) or a known tool; it runs to the end.
_COMMAND_TAIL: Final = re.compile(
    r"(?:(?<=: )|^)"
    r"(?:(?:'[^']*'|\"[^\"]*\"|[^\s`'\"]+) -m \S|(?:uv|pip3?|conda|torchdoctor|nvidia-smi) \S)"
    r".*$",
    re.DOTALL,
)
_BACKTICKS: Final = re.compile(r"`[^`]*`")


class Fit(StrEnum):
    """What a table column does with a cell wider than the room it gets."""

    KEEP = "keep"  # never shortened: short fixed words (a status, a version)
    END = "end"  # cut at the end: "2.7.1+cu128 | vision 0.2…"
    PATH = "path"  # cut in the middle, at separators where it can: "~/code/…/proj/.venv"
    WRAP = "wrap"  # wrapped onto more lines within the column (free text)


def write_json(
    payload: object, stream: TextIO | None = None, *, shown: Callable[[str], str] | None = None
) -> None:
    """`payload` as JSON, always UTF-8: `check --json > out.json` on a Windows console whose code page
    is cp1252 (or PYTHONIOENCODING=cp1252) must still give a file a script can read as UTF-8, with
    every non-ASCII path intact. Where the stream has a byte buffer the UTF-8 goes there. `shown`
    rewrites the text first (plan and check hide a token in --index-base's path with it)."""
    out = stream if stream is not None else sys.stdout
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    if shown is not None:
        text = shown(text)
    text += "\n"
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(text.encode("utf-8"))
        buffer.flush()
    else:
        out.write(text)


# --- the Windows console -----------------------------------------------------------------------

ENABLE_VIRTUAL_TERMINAL_PROCESSING: Final = 0x0004
_STD_HANDLES: Final = {1: -11, 2: -12}  # file descriptor -> STD_OUTPUT_HANDLE, STD_ERROR_HANDLE


class ConsoleModes(Protocol):
    """The two kernel32 calls colour needs, by standard handle number (-11 stdout, -12 stderr)."""

    def get_mode(self, std_handle: int) -> int | None: ...

    def set_mode(self, std_handle: int, mode: int) -> bool: ...


class _Kernel32Console:
    """GetStdHandle / GetConsoleMode / SetConsoleMode through ctypes (Windows only)."""

    def __init__(self) -> None:
        import ctypes  # noqa: PLC0415 - only on Windows, only when colour is considered

        self._ctypes = ctypes
        self._kernel32: Any = getattr(ctypes, "windll").kernel32  # noqa: B009 - absent off Windows

    def get_mode(self, std_handle: int) -> int | None:
        mode = self._ctypes.c_uint32()
        handle = self._kernel32.GetStdHandle(std_handle)
        if not self._kernel32.GetConsoleMode(handle, self._ctypes.byref(mode)):
            return None  # not a console (a pipe, a file, or no console at all)
        return int(mode.value)

    def set_mode(self, std_handle: int, mode: int) -> bool:
        handle = self._kernel32.GetStdHandle(std_handle)
        return bool(self._kernel32.SetConsoleMode(handle, mode))


_vt_enabled: dict[int, bool] = {}


def enable_vt(stream: TextIO, console: ConsoleModes) -> bool:
    """Turn on escape-sequence processing for the console behind `stream`; False where that is not
    possible (not stdout or stderr, no console, or a Windows before 10 that ignores the flag), and
    then the caller prints no colour rather than raw `ESC[31m`."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    std_handle = _STD_HANDLES.get(fd)
    if std_handle is None:
        return False
    if std_handle in _vt_enabled:
        return _vt_enabled[std_handle]
    mode = console.get_mode(std_handle)
    if mode is None:
        ok = False
    elif mode & ENABLE_VIRTUAL_TERMINAL_PROCESSING:
        ok = True
    else:
        ok = console.set_mode(std_handle, mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING)
        # Windows 7/8 refuse the flag; reading it back says whether it took.
        ok = ok and bool((console.get_mode(std_handle) or 0) & ENABLE_VIRTUAL_TERMINAL_PROCESSING)
    _vt_enabled[std_handle] = ok
    return ok


def use_colour(
    stream: TextIO | None, *, windows: bool | None = None, console: ConsoleModes | None = None
) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org). On Windows
    only once the console processes escape sequences (`enable_vt`), or not at all."""
    if stream is None or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return False
    if windows if windows is not None else sys.platform == "win32":
        try:
            return enable_vt(stream, console if console is not None else _Kernel32Console())
        except (OSError, AttributeError):
            return False
    return True


def ensure_streams() -> None:
    """Make printing safe however the process was started.

    Under pythonw.exe or a windowed frozen build `sys.stdout` and `sys.stderr` are None, and the first
    write would end the process with an AttributeError: they become the null device. A console
    whose code page cannot spell a path (cp1252 and "日本") must not end a command either: the
    human text replaces what it cannot encode (JSON is written as UTF-8 bytes, see `write_json`).
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115, PTH123 - lives as long as the process
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def paint(text: str, colour: str, enabled: bool) -> str:
    if not enabled or colour not in _COLOURS:
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def terminal_width() -> int:
    """The columns human output may use: $COLUMNS, else the terminal's, else 80 (not a terminal).

    `shutil.get_terminal_size` semantics (it asks about stdout); never less than MIN_WIDTH.
    """
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


# --- measuring and cutting -----------------------------------------------------------------------


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal: colour codes take none, wide (CJK) characters two."""
    return sum(_char_width(c) for c in strip_ansi(text))


def _pieces(text: str) -> list[tuple[str, int]]:
    """`text` as (piece, width): colour codes (width 0) and single characters."""
    out: list[tuple[str, int]] = []
    pos = 0
    for match in _ANSI.finditer(text):
        out += [(c, _char_width(c)) for c in text[pos : match.start()]]
        out.append((match.group(), -1))
        pos = match.end()
    out += [(c, _char_width(c)) for c in text[pos:]]
    return out


def _cut(text: str, head: int, tail: int) -> str:
    """Keep `head` columns from the start and `tail` from the end, "…" between; every colour code
    is kept, so colours still start and reset."""
    pieces = _pieces(text)
    keep = [False] * len(pieces)
    used = 0
    for i, (_, w) in enumerate(pieces):
        if w < 0:
            continue
        if used + w > head:
            break
        keep[i] = True
        used += w
    used = 0
    for i in range(len(pieces) - 1, -1, -1):
        w = pieces[i][1]
        if w < 0 or keep[i]:
            continue
        if used + w > tail:
            break
        keep[i] = True
        used += w
    out: list[str] = []
    placed = False
    for (piece, w), kept in zip(pieces, keep, strict=True):
        if w < 0 or kept:
            out.append(piece)
        elif not placed:
            out.append(ELLIPSIS)
            placed = True
    return "".join(out)


def shorten(text: str, width: int, *, fit: Fit = Fit.END) -> str:
    """`text` in at most `width` columns, "…" where it was cut (END: at the end; PATH: in the middle).

    Text that fits comes back unchanged; so does everything for Fit.KEEP and Fit.WRAP.
    """
    if fit in (Fit.KEEP, Fit.WRAP) or display_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    if fit is Fit.PATH:
        return _shorten_path(text, width)
    return _cut(text, width - 1, 0)


def _shorten_path(text: str, width: int) -> str:
    """Whole folder names from both ends, alternately, the last one first: "/home/ana/…/proj/.venv"."""
    plain = strip_ansi(text)
    budget = width - 1
    heads_of = re.split(r"(?<=[/\\])", plain)  # "/home/ana/x" -> ["/", "home/", "ana/", "x"]
    tails_of = re.split(r"(?=[/\\])", plain)  # "/home/ana/x" -> ["", "/home", "/ana", "/x"]
    heads: list[str] = []
    tails: list[str] = []
    hi, ti = 0, len(tails_of) - 1  # the next component each end would take
    used = 0
    grew = True
    while grew and hi <= ti:
        grew = False
        if ti >= max(hi, 1) and used + display_width(tails_of[ti]) <= budget:
            used += display_width(tails_of[ti])
            tails.insert(0, tails_of[ti])
            ti -= 1
            grew = True
        if tails and hi <= ti and used + display_width(heads_of[hi]) <= budget:
            used += display_width(heads_of[hi])
            heads.append(heads_of[hi])
            hi += 1
            grew = True
    if not tails:  # not even the last name fits: plain middle cut, more of the end kept
        head = budget // 3
        return _cut(plain, head, budget - head)
    return f"{''.join(heads)}{ELLIPSIS}{''.join(tails)}"


# --- the home folder -----------------------------------------------------------------------------


def _home() -> str | None:
    try:
        home = str(Path.home())
    except (RuntimeError, KeyError):
        return None
    home = home.rstrip("/\\")
    return home or None


def _tilde(text: str, home: str | None) -> str:
    if not home:
        return text
    sep = r"[/\\]" if os.name == "nt" or "\\" in home else "/"
    pattern = re.compile(
        r"(?<![\w.~/\\-])" + re.escape(home) + rf"(?=$|{sep}|[^\w.-])",
        re.IGNORECASE if os.name == "nt" else 0,
    )
    return pattern.sub("~", text)


def display_path(path: Path | str, *, home: str | None = None) -> str:
    """A path for people: under the home folder it reads `~/…` (never use this in JSON or commands)."""
    return _tilde(str(path), home if home is not None else _home())


def split_commands(text: str) -> list[tuple[str, bool]]:
    """`text` as (piece, is_command): `backtick spans` and an install command that ends the text."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for match in _BACKTICKS.finditer(text):
        out += _split_tail(text[pos : match.start()])
        out.append((match.group(), True))
        pos = match.end()
    out += _split_tail(text[pos:])
    return [(piece, cmd) for piece, cmd in out if piece]


def _split_tail(text: str) -> list[tuple[str, bool]]:
    match = _COMMAND_TAIL.search(text)
    if match is None:
        return [(text, False)]
    return [(text[: match.start()], False), (match.group(), True)]


def home_text(text: str, *, home: str | None = None) -> str:
    """Free text for people with the home folder as `~`, except inside commands to run: a `~` in
    quotes, or in a command pasted into another shell, would not be the home folder."""
    where = home if home is not None else _home()
    return "".join(piece if cmd else _tilde(piece, where) for piece, cmd in split_commands(text))


# --- wrapping ------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Words, `backtick spans` with what sticks to them ("`cmd`,"), and a trailing install command."""
    pieces = split_commands(text)
    tail = ""
    if pieces and pieces[-1][1] and not pieces[-1][0].startswith("`"):
        tail = pieces.pop()[0].strip()
    words = _TOKEN.findall("".join(piece for piece, _ in pieces))
    return [*words, tail] if tail else words


def wrap(text: str, width: int, *, first: str = "", rest: str | None = None) -> list[str]:
    """`text` in lines of at most `width` columns: `first` starts the first line, `rest` (spaces
    as wide as `first` by default) the others. A word or command that does not fit goes to the next
    line whole; if it does not fit there either it stays whole and alone (a command to copy, a URL).
    Colour codes in `first`, `rest` or `text` take no room.
    """
    indent = " " * display_width(first) if rest is None else rest
    lines: list[str] = []
    for paragraph in text.split("\n") or [""]:
        line, empty = (first if not lines else indent), True
        for token in _tokens(paragraph):
            need = display_width(token) + (0 if empty else 1)
            if display_width(line) + need <= width or (empty and not strip_ansi(line).strip()):
                line = line + token if empty else f"{line} {token}"
                empty = False
                continue
            lines.append(line.rstrip())  # a label alone ("fix:") when even the first word does not fit
            line = indent + token
            empty = False
        lines.append(line.rstrip())
    return lines


def _wrap_cell(text: str, width: int) -> list[str]:
    """Free text in a column: wrapped, and a word longer than the column split (it is in a table)."""
    out: list[str] = []
    for wrapped in wrap(text, width):
        rest = wrapped
        while display_width(rest) > width:
            plain = strip_ansi(rest)
            cut, used = 0, 0
            while cut < len(plain) and used + _char_width(plain[cut]) <= width:
                used += _char_width(plain[cut])
                cut += 1
            cut = max(cut, 1)
            out.append(plain[:cut])
            rest = plain[cut:]
        out.append(rest)
    return out


# --- tables --------------------------------------------------------------------------------------

_GAP: Final = "  "
_MIN_CELL: Final = 8  # a shrinking column keeps at least this much (or its header, if wider)
_MIN_WRAP: Final = 16


def _fit_widths(natural: list[int], header: Sequence[str], fits: Sequence[Fit], width: int) -> list[int]:
    """Shrink the widest shrinkable column a column at a time until the table fits `width`."""
    widths = list(natural)
    floors = []
    for nat, head, fit in zip(natural, header, fits, strict=True):
        if fit is Fit.KEEP:
            floors.append(nat)
        else:
            floor = _MIN_WRAP if fit is Fit.WRAP else _MIN_CELL
            floors.append(min(nat, max(display_width(head), floor)))
    excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str],
    *,
    width: int | None = None,
    fit: Sequence[Fit] | None = None,
) -> list[str]:
    """Left-aligned columns, in `width` columns when given (cells shortened or wrapped per `fit`,
    END by default). Cells may hold colour codes: they take no room."""
    fits = list(fit) if fit is not None else [Fit.END] * len(header)
    natural = [display_width(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], display_width(cell))
    widths = natural if width is None else _fit_widths(natural, header, fits, width)
    heads = [shorten(h, widths[i]) for i, h in enumerate(header)]
    stacks = [
        [
            _wrap_cell(cell, widths[i]) if fits[i] is Fit.WRAP else [shorten(cell, widths[i], fit=fits[i])]
            for i, cell in enumerate(row)
        ]
        for row in rows
    ]
    # A path cut at a folder boundary may come out narrower than its column: give the room back.
    for i, head in enumerate(heads):
        widths[i] = max([display_width(head)] + [display_width(p) for cells in stacks for p in cells[i]])

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (widths[i] - display_width(c)) for i, c in enumerate(cells)]
        return _GAP.join(padded).rstrip()

    lines = [line(heads)]
    for cells in stacks:
        for n in range(max(len(s) for s in cells)):
            lines.append(line([s[n] if n < len(s) else "" for s in cells]))
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
