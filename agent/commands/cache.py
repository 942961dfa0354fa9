"""`torchdoctor cache clean [--json] [--dry-run]`: empty the wheel and index caches.

Both caches also trim themselves to a size after each write (service/install/cache.py); this is
for taking the space back now. Nothing in any environment changes, and a download another
torchdoctor is running keeps its partial file.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from torchdoctor.agent.output import human_size, write_json
from torchdoctor.service.errors import EXIT_OK
from torchdoctor.service.install.cache import CleanResult, clean, index_cache, wheel_cache


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cache",
        help="empty torchdoctor's download caches (wheels and index pages)",
        description="Remove the downloaded wheels and cached index pages. Environments are not touched.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(parser))
    clean_parser = actions.add_parser(
        "clean", help="remove every cached wheel and index page", description="Empty both caches."
    )
    clean_parser.add_argument("--json", action="store_true", help="write the result as JSON")
    clean_parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    clean_parser.set_defaults(handler=handle)


def to_json(result: CleanResult) -> dict[str, object]:
    return {
        "schema_version": 1,
        "dry_run": result.dry_run,
        "removed": [{"path": str(f.path), "bytes": f.size} for f in result.removed],
        "bytes": result.bytes,
        "in_use": [str(p) for p in result.in_use],
        "folders": [str(wheel_cache()), str(index_cache())],
    }


def handle(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    result = clean(dry_run=args.dry_run)
    if args.json:
        write_json(to_json(result), out)
        return EXIT_OK
    verb = "Would remove" if result.dry_run else "Removed"
    count = len(result.removed)
    print(f"{verb} {count} file{'s' if count != 1 else ''} ({human_size(result.bytes)}).", file=out)
    for item in result.removed if result.dry_run else ():
        print(f"  {item.path} ({human_size(item.size)})", file=out)
    for path in result.in_use:
        print(f"  kept {path}: another torchdoctor is still downloading it", file=out)
    return EXIT_OK
