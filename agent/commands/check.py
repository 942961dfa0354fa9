"""`torchdoctor check`: every environment's torch build against this machine's GPU and driver."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from torchdoctor.agent.args import add_env_arguments, add_hardware_argument, add_index_base_argument
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
from torchdoctor.service.envs.discover import collect_environments, environment_from_path, is_free_threaded
from torchdoctor.service.errors import EXIT_ATTENTION, EXIT_OK
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.install.urlsecrets import redact_known
from torchdoctor.service.models import (
    CheckReport,
    EnvReport,
    EnvStatus,
    Hardware,
    OverallStatus,
    PythonEnv,
    Severity,
)
from torchdoctor.service.probe.hardware import resolve_hardware
from torchdoctor.service.rules.check import check_to_json, run_check

_STATUS_COLOUR = {
    EnvStatus.OK: "green",
    EnvStatus.WARN: "yellow",
    EnvStatus.BROKEN: "red",
    EnvStatus.NO_TORCH: "dim",
}
_SEVERITY_COLOUR = {Severity.ERROR: "red", Severity.WARN: "yellow", Severity.INFO: "cyan"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="diagnose every Python environment's torch build",
        description="Diagnose every Python environment's torch build against this machine's GPU and driver.",
    )
    add_target_arguments(parser)
    add_index_base_argument(parser)  # the index the fix texts' hand commands name, as plan uses it
    parser.add_argument("--json", action="store_true", help="print the DESIGN.md JSON document")
    parser.set_defaults(handler=handle)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--hardware / --env / --no-discover, shared by check and tray."""
    add_hardware_argument(parser)
    add_env_arguments(parser, verb="check")


def collect(args: argparse.Namespace) -> CheckReport:
    """Hardware, environments and knowledge from the arguments, then the check itself."""
    knowledge = load_knowledge()
    settings = load_settings()
    hardware = resolve_hardware(args.hardware)
    # --env paths must be environments (exit 2 otherwise); config.toml's and discovered ones that
    # turn out unreadable only become notes.
    explicit = [environment_from_path(p) for p in args.env]
    others = collect_environments(settings, (), discover=not args.no_discover)
    index_base = getattr(args, "index_base", DEFAULT_INDEX_BASE)
    if index_base != DEFAULT_INDEX_BASE:
        # Only then: the index client's module (ssl, hashlib) is not needed to read a default.
        from torchdoctor.service.install.index import validate_index_base  # noqa: PLC0415

        index_base = validate_index_base(index_base)
    return run_check(hardware, explicit, others.environments, knowledge, others.notes, index_base=index_base)


def handle(args: argparse.Namespace) -> int:
    report = collect(args)
    if args.json:
        write_json(check_to_json(report), shown=redact_known)
    else:
        render(report, sys.stdout)
    return EXIT_OK if report.status is OverallStatus.OK else EXIT_ATTENTION


def hardware_line(hw: Hardware) -> str:
    if not hw.gpus:
        driver = f" (driver {hw.driver_version})" if hw.driver_version else ""
        return f"No NVIDIA GPU found{driver}."
    gpus = []
    for gpu in hw.gpus:
        facts = []
        if gpu.compute_capability:
            facts.append(f"sm_{gpu.compute_capability.sm}")
        if gpu.memory_mib:
            facts.append(f"{gpu.memory_mib / 1024:.0f} GiB")
        gpus.append(f"{gpu.name} ({', '.join(facts)})" if facts else gpu.name)
    driver = f"driver {hw.driver_version or 'unknown'}"
    if hw.cuda_driver_version:
        driver += f", supports CUDA {hw.cuda_driver_version}"
    return f"GPU: {'; '.join(gpus)} | {driver}"


def _python_cell(env: PythonEnv) -> str:
    """`3.13.1t` for the free-threaded build, which may share its folder with the default one."""
    return (env.python_version or "?") + ("t" if is_free_threaded(env.python) else "")


def _torch_cell(report: EnvReport) -> str:
    build = report.torch
    if build is None:
        return "-"
    text = build.version or "unreadable"
    if build.torchvision:
        text += f" | vision {build.torchvision}"
    if build.torchaudio:
        text += f" | audio {build.torchaudio}"
    return text


def render(report: CheckReport, out: TextIO, *, width: int | None = None) -> None:
    """The report for a person, in `width` columns (the terminal's by default); paths read `~/…`."""
    colour = use_colour(out)
    cols = width if width is not None else terminal_width()

    def say(lines: list[str], hue: str = "") -> None:
        for raw in lines:
            line = redact_known(raw)  # a token in --index-base's path, inside a URL kept whole
            print(paint(line, hue, colour) if hue else line, file=out)

    say(wrap(home_text(hardware_line(report.hardware)), cols, rest="     "))
    for note in report.hardware.notes:
        say(wrap(home_text(note), cols, first="  note: "), "yellow")
    if not report.environments:
        say(wrap("No Python environments found (add some with --env PATH or `roots` in config.toml).", cols))
        return
    print(file=out)
    header = ("ENVIRONMENT", "PYTHON", "TORCH", "STATUS")
    rows: list[tuple[str, str, str, str]] = []
    for env_report in report.environments:
        status = env_report.status
        rows.append(
            (
                display_path(env_report.env.root),
                # "3.13.1t": the free-threaded build beside the default one in the same folder.
                (env_report.env.python_version or "?")
                + ("t" if is_free_threaded(env_report.env.python) else ""),
                _torch_cell(env_report),
                paint(status.value, _STATUS_COLOUR[status], colour),
            )
        )
    say(table(rows, header, width=cols, fit=(Fit.PATH, Fit.KEEP, Fit.END, Fit.KEEP)))

    for env_report in report.environments:
        if not env_report.findings:
            continue
        print(file=out)
        # The whole path (a table cell may have been shortened): one token, never cut.
        say([display_path(env_report.env.root)], "bold")
        for finding in env_report.findings:
            tag = paint(f"{finding.severity.value:5}", _SEVERITY_COLOUR[finding.severity], colour)
            text = home_text(f"{finding.code.value}: {finding.message}")
            say(wrap(text, cols, first=f"  {tag} ", rest=" " * 8))
            # Commands in the fix keep their real paths: a `~` pasted inside quotes is no home folder.
            say(wrap(home_text(finding.fix), cols, first="        fix: "))
    for note in report.notes:
        say(wrap(home_text(note), cols, first="note: "), "dim")
    print(file=out)
    summary = {
        OverallStatus.OK: "All environments fit this machine.",
        OverallStatus.WARN: "Some environments need attention.",
        OverallStatus.BROKEN: "Some environments are broken on this machine.",
    }[report.status]
    summary_colour = {"ok": "green", "warn": "yellow", "broken": "red"}[report.status.value]
    say(wrap(summary, cols), summary_colour)
