"""`torchdoctor` command line: argument parsing, dispatch, and the one-line error contract.

Each command lives in `agent/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `handler` to a function `(args) -> int`. Errors derived from TorchdoctorError are
printed as one line (with the hint in it) with their exit code; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Final, NoReturn

from torchdoctor.service.errors import EXIT_ATTENTION, EXIT_BAD_INPUT, TorchdoctorError

# One line each for the top-level help. Only the chosen command's module is imported: a CLI that
# starts fast matters for scripts and for `check`'s own speed target.
COMMANDS: Final = {
    "check": "diagnose every Python environment's torch build",
    "hardware": "show the NVIDIA driver and GPUs the probe sees",
    "envs": "list the Python environments torchdoctor finds",
    "plan": "show which torch build `fix` would install into an environment",
    "fix": "reinstall the torch builds that fit this machine, reversibly",
    "bench": "prove that an environment's torch computes correctly on this GPU, and how fast",
    "tray": "run the tray icon: checks in the background, notifies, repairs from its menu",
    "autostart": "start the tray at login: enable, disable or show its status",
    "install-desktop-entry": "add torchdoctor to the desktop's application menu (Linux)",
}

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"torchdoctor: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    try:
        return metadata.version("torchdoctor")
    except metadata.PackageNotFoundError:
        return "unknown"


def command_module(name: str) -> str:
    """`install-desktop-entry` lives in `install_desktop_entry.py`."""
    return name.replace("-", "_")


def build_parser(selected: str | None = None, *, all_commands: bool = False) -> argparse.ArgumentParser:
    """The parser, with the full sub-parser of `selected` (of every command with `all_commands`)."""
    parser = _Parser(
        prog="torchdoctor",
        description="Keep every Python environment's PyTorch build matched to this machine's GPU and driver.",
    )
    parser.add_argument("--version", action="version", version=f"torchdoctor {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary in COMMANDS.items():
        if all_commands or name == selected:
            importlib.import_module(f"torchdoctor.agent.commands.{command_module(name)}").register(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def _tolerate_narrow_consoles() -> None:
    r"""A character the stream's encoding lacks is written as an escape instead of ending the command.

    Windows gives a redirected stdout its ANSI code page (cp1252 on Western systems), which cannot
    spell a path like `C:\Users\李\环境`. `\uXXXX` is what JSON itself writes for such a
    character, so the JSON stays valid and names the path exactly.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (getattr(stream, "encoding", "") or "").lower() not in (
            "utf-8",
            "utf8",
        ):
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_narrow_consoles()
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(selected)
    args = parser.parse_args(args_list)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return handler(args)
    except TorchdoctorError as exc:
        # One line, hint included: scripts and log scrapers read errors line by line.
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"torchdoctor: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("torchdoctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `torchdoctor check | head` must not end in a traceback.
        return 0
    except Exception as exc:
        # A bug of ours: one line for the person, the traceback in a file for the bug report.
        where = _write_crash_log()
        print(f"torchdoctor: internal error: {type(exc).__name__}: {exc} (details: {where})", file=sys.stderr)
        return EXIT_ATTENTION


def _write_crash_log() -> str:
    import traceback  # noqa: PLC0415 - only on the crash path
    from datetime import UTC, datetime  # noqa: PLC0415

    from torchdoctor.service import paths  # noqa: PLC0415

    try:
        folder = paths.log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"
        path.write_text(" ".join(sys.argv) + "\n\n" + traceback.format_exc(), encoding="utf-8")
        return str(path)
    except OSError:
        return "no log could be written"
