"""`torchdoctor` command line: argument parsing, dispatch, and the one-line error contract.

Each command lives in `agent/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `handler` to a function `(args) -> int`. Errors derived from TorchdoctorError are
printed as one line (with the hint in it) with their exit code; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Final, NoReturn

from torchdoctor.agent.output import ensure_streams
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
    "cache": "empty torchdoctor's download caches (wheels and index pages)",
    "knowledge": "show the facts this copy decides with, and whether the index knows more",
    "report": "write one self-contained HTML page: this machine and its history, or a fleet (--from)",
    "install-desktop-entry": "add torchdoctor to the desktop's application menu (Linux)",
}

Handler = Callable[[argparse.Namespace], int]
_DISK_FULL: Final = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


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


def main(argv: Sequence[str] | None = None) -> int:
    ensure_streams()
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(selected)
    args = parser.parse_args(args_list)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        from torchdoctor.service.paths import ensure_private_roots  # noqa: PLC0415 - after parsing: --help stays fast

        ensure_private_roots()
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
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            return _internal_error(exc)
        # A full disk is the user's to fix, not a bug: one line, no crash log (it would not fit).
        where = f" writing {exc.filename}" if exc.filename else ""
        print(
            f"torchdoctor: the disk is full{where} ({exc.strerror}) "
            "(hint: free some space, e.g. with `torchdoctor cache clean`, and try again)",
            file=sys.stderr,
        )
        _silence_stdout()
        return EXIT_ATTENTION
    except Exception as exc:
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    # A bug of ours: one line for the person, the traceback in a file for the bug report.
    where = _write_crash_log()
    print(f"torchdoctor: internal error: {type(exc).__name__}: {exc} (details: {where})", file=sys.stderr)
    return EXIT_ATTENTION


def _silence_stdout() -> None:
    """Point stdout at the null device: what is still buffered for a full disk would fail again
    at exit, with Python's own "Exception ignored" lines."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _write_crash_log() -> str:
    import traceback  # noqa: PLC0415 - only on the crash path

    from torchdoctor.service.install.urlsecrets import redact_argv  # noqa: PLC0415
    from torchdoctor.service.logfiles import create_log  # noqa: PLC0415

    try:
        path, fh = create_log("crash")
        with fh:
            fh.write(" ".join(redact_argv(sys.argv)) + "\n\n" + traceback.format_exc())
        return str(path)
    except OSError:
        return "no log could be written"
