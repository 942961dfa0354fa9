"""`torchdoctor autostart enable|disable|status [--json]`: start the tray at login, or stop it.

enable and disable are idempotent and print the resulting status; status exits 0 whatever the state.
A failed write is one line and exit 1 (AutostartError); a bad action is exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final, TextIO

from torchdoctor.agent.autostart import (
    AutostartStatus,
    autostart_status,
    disable_autostart,
    enable_autostart,
)
from torchdoctor.agent.output import display_path, paint, use_colour, write_json
from torchdoctor.service.errors import EXIT_OK

SCHEMA_VERSION: Final = 1

_ACTIONS: Final[dict[str, Callable[[], AutostartStatus]]] = {
    "enable": enable_autostart,
    "disable": disable_autostart,
    "status": autostart_status,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "autostart",
        help="start the tray at login: enable, disable or show its status",
        description=(
            "Start `torchdoctor tray` at login, for this user only: a Run value in the registry on "
            "Windows (it shows in Task Manager -> Startup apps), an XDG autostart file on Linux. "
            "enable also turns back on an entry the user turned off there."
        ),
    )
    parser.add_argument("action", choices=list(_ACTIONS), help="what to do")
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.set_defaults(handler=run)


def status_to_json(status: AutostartStatus) -> dict[str, object]:
    return {
        "schema_version": SCHEMA_VERSION,
        "enabled": status.enabled,
        "mechanism": str(status.mechanism),
        "location": status.location,
        "command": status.command,
        "expected_command": status.expected_command,
        "disabled_by_user": status.disabled_by_user,
        "stale": status.stale,
        "notes": list(status.notes),
    }


def render(status: AutostartStatus, *, colour: bool) -> list[str]:
    """One headline, then one line per remaining note; pure, so tests read it without a terminal."""
    notes = list(status.notes)
    where = display_path(status.location)
    if status.disabled_by_user:
        # The status puts the reason it is off first.
        reason = notes.pop(0) if notes else "turned off by the user"
        head = f"{paint('off', 'yellow', colour)}: {reason}; `torchdoctor autostart enable` turns it back on"
    elif status.enabled and status.stale:
        head = (
            f"{paint('on, but broken', 'red', colour)} ({where}): the program it starts is gone; "
            "`torchdoctor autostart enable` repairs it"
        )
    elif status.enabled:
        head = f"{paint('on', 'green', colour)} ({where})"
    else:
        head = f"{paint('off', 'dim', colour)}; `torchdoctor autostart enable` turns it on"
    return [f"Start at login: {head}", *(f"  - {note}" for note in notes)]


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    status = _ACTIONS[args.action]()
    if args.json:
        write_json(status_to_json(status), out)
    else:
        for line in render(status, colour=use_colour(out)):
            out.write(line + "\n")
    return EXIT_OK
