"""`torchdoctor report`: one self-contained HTML page, for this machine or for a fleet.

Without --from: a fresh check of this machine, with the histories it keeps (agent/report/local.py).
With --from: the fleet view over `check --json` documents that other machines wrote; unreadable
ones are listed in the page, and only "no readable document at all" is an error (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Final

from torchdoctor.agent.args import add_env_arguments, add_hardware_argument
from torchdoctor.agent.output import display_path
from torchdoctor.service import paths
from torchdoctor.service.errors import EXIT_ATTENTION, EXIT_OK, BadInputError

DEFAULT_OUT: Final = "torchdoctor-report.html"
STDOUT: Final = "-"


class NoDocumentError(BadInputError):
    """--from named nothing this version can read: there is no report to write (exit 2)."""

    code = "no-document"


class ReportWriteError(BadInputError):
    """--out cannot be written (a missing folder, no permission): exit 2, nothing written."""

    code = "report-not-written"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "report",
        help="write one self-contained HTML page: this machine and its history, or a fleet (--from)",
        description=(
            "Write one self-contained HTML page (no network, no server): this machine's hardware, "
            "environments, benchmark, fix and driver history; or, with --from, a fleet view over "
            "`check --json` documents."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=DEFAULT_OUT,
        help=f"where to write the page (default ./{DEFAULT_OUT}; - for stdout)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        metavar="FILE|FOLDER",
        help="a `check --json` document, a folder of them, or a glob (repeatable): the fleet view",
    )
    add_hardware_argument(parser)
    add_env_arguments(parser, verb="report on")
    parser.set_defaults(handler=handle)


def _version() -> str:
    try:
        return metadata.version("torchdoctor")
    except metadata.PackageNotFoundError:
        return "unknown"


def _machine_page(args: argparse.Namespace, now: datetime) -> str:
    # Imported here: the check's modules are not needed for a fleet report.
    from torchdoctor.agent.commands.check import collect  # noqa: PLC0415
    from torchdoctor.agent.report.documents import document_from_json  # noqa: PLC0415
    from torchdoctor.agent.report.local import gather  # noqa: PLC0415
    from torchdoctor.agent.report.render import render_machine  # noqa: PLC0415
    from torchdoctor.service.rules.check import check_to_json  # noqa: PLC0415

    report = collect(args)
    # Through the JSON contract, so this page and a fleet's read exactly the same facts.
    doc = document_from_json(check_to_json(report), name=socket.gethostname() or "this machine", source="")
    return render_machine(
        doc, gather(), generated_at=now, version=_version(), log_dir=display_path(paths.log_dir())
    )


def _fleet_page(sources: list[str], now: datetime) -> str:
    from torchdoctor.agent.report.render import render_fleet  # noqa: PLC0415
    from torchdoctor.agent.report.sources import load  # noqa: PLC0415

    loaded = load(sources)
    if not loaded.documents:
        shown = "; ".join(f"{u.source}: {u.reason}" for u in loaded.unreadable[:3])
        more = f" (and {len(loaded.unreadable) - 3} more)" if len(loaded.unreadable) > 3 else ""
        raise NoDocumentError(
            f"no readable `check --json` document in --from: {shown}{more}",
            hint="each machine writes one with `torchdoctor check --json > HOST.json` "
            "(the README's fleet section)",
        )
    return render_fleet(loaded.documents, loaded.unreadable, generated_at=now, version=_version())


def write_page(html: str, out: Path) -> None:
    """Atomically: a browser or a sync tool never sees half a page."""
    folder = out.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ReportWriteError(
            f"cannot write the report in {folder}: {exc.strerror or exc}", hint="pick another --out FILE"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
        Path(tmp).replace(out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ReportWriteError(
            f"cannot write the report to {out}: {exc.strerror or exc}", hint="pick another --out FILE"
        ) from None


class _Said(logging.Handler):
    """Keeps what the opener logs, so its reason joins our one stderr line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _default_opener(path: Path) -> tuple[bool, str | None]:
    # The tray's opener: the OS's default program for .html, outliving this process.
    from torchdoctor.agent.tray.opener import log, open_path  # noqa: PLC0415

    said = _Said()
    log.addHandler(said)
    propagate, log.propagate = log.propagate, False
    try:
        opened = open_path(path)
    finally:
        log.removeHandler(said)
        log.propagate = propagate
    return opened, said.lines[-1] if said.lines else None


# The seam --open goes through (the desktop is a real boundary); tests put a stand-in xdg-open on
# PATH instead of replacing this. Returns (opened, why not).
OPENER: Callable[[Path], tuple[bool, str | None]] = _default_opener


def handle(args: argparse.Namespace) -> int:
    if args.sources and (args.hardware or args.env or args.no_discover):
        raise BadInputError(
            "--hardware, --env and --no-discover describe this machine; they do not apply with --from",
            hint="drop them, or drop --from for this machine's report",
        )
    if args.out == STDOUT and args.open:
        raise BadInputError("--open needs a file to open, not --out -", hint="give --out FILE")
    now = datetime.now(UTC)
    html = _fleet_page(args.sources, now) if args.sources else _machine_page(args, now)
    if args.out == STDOUT:
        sys.stdout.write(html)
        return EXIT_OK
    out = Path(args.out).absolute()
    write_page(html, out)
    print(f"Report written to {out} ({len(html.encode('utf-8')) // 1024} KiB)")
    if args.open:
        opened, why = OPENER(out)
        if not opened:
            because = f" ({why})" if why else ""
            print(
                f"torchdoctor: the report could not be opened{because}; open {out} in a browser",
                file=sys.stderr,
            )
            return EXIT_ATTENTION
    return EXIT_OK
