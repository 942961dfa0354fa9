"""`torchdoctor install-desktop-entry [--json]`: add the tray to the Linux desktop's application menu.

Idempotent: it rewrites the entry and the icons each time. A failed write is one line and exit 1
(DesktopEntryError); on Windows or macOS it exits 2 (NotLinuxError).
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, TextIO

from torchdoctor.agent.desktop_entry import InstalledEntry, install_for_this_user
from torchdoctor.agent.output import display_path, write_json
from torchdoctor.service.errors import EXIT_OK

SCHEMA_VERSION: Final = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "install-desktop-entry",
        help="add torchdoctor to the desktop's application menu (Linux)",
        description=(
            "Write $XDG_DATA_HOME/applications/torchdoctor.desktop (default ~/.local/share) and the "
            "app icon in the hicolor theme, so the tray starts from the application menu. Linux only; "
            "on Windows the installer adds the Start-menu entry."
        ),
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.set_defaults(handler=run)


def to_json(installed: InstalledEntry) -> dict[str, object]:
    return {
        "schema_version": SCHEMA_VERSION,
        "entry": str(installed.entry),
        "icons": [str(p) for p in installed.icons],
        "command": installed.command,
    }


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    installed = install_for_this_user()
    if args.json:
        write_json(to_json(installed), out)
    else:
        out.write(f"Application menu entry: {display_path(str(installed.entry))}\n")
        out.write(f"  runs: {installed.command}\n")
        out.write(
            f"  icons: {len(installed.icons)} sizes in {display_path(str(installed.icons[0].parents[2]))}\n"
        )
    return EXIT_OK
