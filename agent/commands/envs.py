"""`torchdoctor envs [--json] [--env PATH]... [--no-discover]`: the Python environments we would check.

The table is for people (path, kind, Python version, pip); `--json` writes a list of objects with
`path, python, python_version, kind, has_pip, site_packages`. Discovery notes (a search cut short,
unreadable folders) go to stderr so that stdout stays the table or the JSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from torchdoctor.agent.args import add_env_arguments
from torchdoctor.agent.output import (
    Fit,
    display_path,
    home_text,
    paint,
    table,
    terminal_width,
    use_colour,
    wrap,
    write_json,
)
from torchdoctor.service.config import load_settings
from torchdoctor.service.envs.discover import collect_environments, envs_to_json
from torchdoctor.service.errors import EXIT_OK
from torchdoctor.service.models import PythonEnv


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "envs",
        help="list the Python environments torchdoctor finds",
        description=(
            "List the Python environments torchdoctor finds: venvs, conda, pyenv, uv-managed and "
            "installed Pythons. Add folders to search, environments to include and paths to leave "
            "out in config.toml (`roots`, `environments`, `exclude`)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="write a JSON list instead of a table")
    add_env_arguments(parser, verb="list")
    parser.set_defaults(handler=handle)


def render(envs: tuple[PythonEnv, ...], *, colour: bool, width: int | None = None) -> list[str]:
    """The table in `width` columns (the terminal's by default), paths as `~/…`; pure, so tests
    read it without a terminal."""
    if not envs:
        return ["No Python environments found."]
    rows = [
        [
            display_path(e.root),
            e.kind.value,
            e.python_version or paint("unknown", "dim", colour),
            "yes" if e.has_pip else "no",
        ]
        for e in envs
    ]
    cols = width if width is not None else terminal_width()
    lines = table(
        rows, ["PATH", "KIND", "PYTHON", "PIP"], width=cols, fit=(Fit.PATH, Fit.KEEP, Fit.KEEP, Fit.KEEP)
    )
    count = len(envs)
    lines.append(f"{count} environment{'s' if count != 1 else ''}")
    return lines


def handle(args: argparse.Namespace, stream: TextIO | None = None, errors: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stdout
    err = errors if errors is not None else sys.stderr
    discovery = collect_environments(load_settings(), args.env, discover=not args.no_discover)
    if args.json:
        write_json(envs_to_json(discovery.environments), out)
    else:
        for line in render(discovery.environments, colour=use_colour(out)):
            out.write(line + "\n")
    for note in discovery.notes:
        for line in wrap(home_text(note), terminal_width(), first="note: "):
            err.write(line + "\n")
    return EXIT_OK
