"""`torchdoctor plan --env PATH`: which torch build would `fix` install here, and why."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from torchdoctor.agent.args import add_hardware_argument, add_index_base_argument
from torchdoctor.agent.output import (
    display_path,
    home_text,
    human_size,
    paint,
    terminal_width,
    use_colour,
    wrap,
    write_json,
)
from torchdoctor.service.envs.discover import environment_from_path, host_platform
from torchdoctor.service.envs.sysprefix import ensure_not_system_folder
from torchdoctor.service.errors import EXIT_BAD_INPUT, EXIT_OK, TorchdoctorError
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.index import IndexClient, validate_index_base
from torchdoctor.service.install.plan import Target, inspect_target, make_plan
from torchdoctor.service.install.policy import Plan, PlanRefusedError, plan_to_json
from torchdoctor.service.install.urlsecrets import redact_known
from torchdoctor.service.models import Hardware, PythonEnv
from torchdoctor.service.probe.hardware import resolve_hardware


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "plan",
        help="show which torch build `fix` would install into an environment",
        description="Choose the torch builds that fit this machine; installs nothing.",
    )
    add_plan_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=handle)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """--env / --hardware / --index-base, shared by plan and fix."""
    parser.add_argument(
        "--env", type=Path, required=True, metavar="PATH", help="the environment's root or python executable"
    )
    add_hardware_argument(parser)
    add_index_base_argument(parser)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything `plan` learns, which `fix` then acts on."""

    env: PythonEnv
    hardware: Hardware
    target: Target
    plan: Plan


def environment_to_change(path: Path) -> PythonEnv:
    """The environment `fix` (and `plan`, which says what fix would do) acts on.

    A system folder (/, /usr, C:\\Windows, the home folder itself) is refused with exit 2, both as
    given and as the root the path leads to (`/usr/bin/python3` is /usr), before anything else.
    """
    platform = host_platform()
    ensure_not_system_folder(path, platform=platform)
    env = environment_from_path(path)
    ensure_not_system_folder(env.root, platform=platform)
    return env


def prepare(args: argparse.Namespace, *, env: PythonEnv, progress: TextIO | None = None) -> Prepared:
    """Raises PlanRefusedError (exit 1), IndexUnreachableError (exit 1) or a BadInputError (exit 2)."""
    index_base = validate_index_base(args.index_base)
    knowledge = load_knowledge()
    hardware = resolve_hardware(args.hardware)
    target = inspect_target(env, knowledge)
    client = IndexClient(index_base)

    def say(message: str) -> None:
        if progress is not None:
            print(f"  {message}", file=progress, flush=True)

    plan = make_plan(target, hardware, knowledge, client, index_base=index_base, progress=say)
    return Prepared(env, hardware, target, plan)


def handle(args: argparse.Namespace) -> int:
    env = environment_to_change(args.env)
    try:
        # Progress only for a person watching: scripts get stderr for errors alone.
        progress = sys.stderr if sys.stderr.isatty() and not args.json else None
        plan = prepare(args, env=env, progress=progress).plan
    except TorchdoctorError as exc:
        if not args.json or exc.exit_code == EXIT_BAD_INPUT:
            raise
        # A script asked for JSON: it gets a document saying why there is no plan, and the exit code.
        write_json(
            {
                "environment": str(env.root),
                "variant": None,
                "index_url": None,
                "requirements": [],
                "reason": str(exc),
                "hint": exc.hint,
                "refused": isinstance(exc, PlanRefusedError),
                "error": exc.code,
            }
        )
        return exc.exit_code
    if args.json:
        write_json(plan_to_json(plan), shown=redact_known)
    else:
        render(plan, sys.stdout)
    return EXIT_OK


def render(plan: Plan, out: TextIO, *, width: int | None = None) -> None:
    """The plan for a person, in `width` columns (the terminal's by default); paths read `~/…`."""
    colour = use_colour(out)
    cols = width if width is not None else terminal_width()

    def say(lines: list[str], hue: str = "") -> None:
        for raw in lines:
            line = redact_known(raw)  # a token in --index-base's path, inside a URL kept whole
            print(paint(line, hue, colour) if hue else line, file=out)

    say(wrap(f"Plan for {display_path(plan.environment)}", cols, rest="  "), "bold")
    say(wrap(home_text(plan.reason), cols, first="  ", rest="    "))
    now = plan.current or "no torch"
    say(wrap(f"{now} -> {paint(str(plan.torch.version), 'green', colour)}", cols, first="  torch: "))
    say(wrap(plan.index_url, cols, first="  index: "))  # a URL: whole, on its own line if need be
    for f in plan.files:
        hashed = "sha256 checked" if f.sha256 else "no hash published"
        say(wrap(f"{f.filename}  ({human_size(f.size)}, {hashed})", cols, first="    ", rest="      "))
    for note in plan.notes:
        say(wrap(home_text(note), cols, first="  note: "), "yellow")
    if plan.changes_nothing:
        say(wrap("The environment already has this build; `fix` would change nothing.", cols, first="  "))
