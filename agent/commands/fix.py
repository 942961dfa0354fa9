"""`torchdoctor fix --env PATH`: install the planned builds, reversibly."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from torchdoctor.agent.child import add_tray_child_argument, cancel_on_stdin_eof
from torchdoctor.agent.commands.plan import add_plan_arguments, environment_to_change, prepare, render
from torchdoctor.agent.output import human_size, paint, use_colour
from torchdoctor.service.errors import EXIT_OK, BadInputError, TorchdoctorError
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.fix import (
    FixFailedError,
    FixOptions,
    FixResult,
    apply_plan,
    check_conda,
    check_externally_managed,
    check_user_site,
    externally_managed_marker,
    fix_session,
)
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.installers import find_uv, make_backend, resolve_backend
from torchdoctor.service.install.policy import Plan
from torchdoctor.service.install.snapshot import pending_snapshots
from torchdoctor.service.install.urlsecrets import redact
from torchdoctor.service.logfiles import create_log
from torchdoctor.service.models import PythonEnv


class ConfirmationNeededError(BadInputError):
    """No terminal to ask on and no --yes: a usage error (exit 2)."""

    code = "confirmation-needed"


class NotConfirmedError(TorchdoctorError):
    """The person said no: nothing changed, and the environment still needs attention (exit 1)."""

    code = "not-confirmed"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fix",
        help="reinstall the torch builds that fit this machine, reversibly",
        description=(
            "Install the planned torch, torchvision and torchaudio builds. The current files are kept "
            "and restored exactly if anything fails or you press Ctrl-C."
        ),
    )
    add_plan_arguments(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before changing the environment")
    parser.add_argument(
        "--dry-run", action="store_true", help="show the plan and the installer commands only"
    )
    parser.add_argument("--installer", choices=("uv", "pip"), help="default: uv when available, else pip")
    parser.add_argument("--no-bench", action="store_true", help="skip the sanity benchmark after installing")
    parser.add_argument(
        "--allow-conda-mix", action="store_true", help="replace a conda-installed torch with pip wheels"
    )
    parser.add_argument(
        "--break-system-packages",
        action="store_true",
        help="install into a Python marked externally managed (PEP 668); passed on to pip and uv",
    )
    add_tray_child_argument(parser)
    parser.set_defaults(handler=handle)


class ConsoleReporter:
    """Progress on stderr: numbered steps, and a live download line on a terminal."""

    def __init__(self, out: TextIO, *, percent_lines: bool = False) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        # Without a terminal there is no live bar; the tray still wants to show how far a
        # 2.5 GB download is, so it gets a line per tenth.
        self.percent_lines = percent_lines and not self.tty
        self._last_tenth = -1
        self.colour = use_colour(out)
        self.number = 0
        self._last_draw = 0.0
        self._drawn = False

    def step(self, text: str) -> None:
        self.end_line()
        self.number += 1
        print(paint(f"[{self.number}] {text}", "bold", self.colour), file=self.out, flush=True)

    def detail(self, text: str) -> None:
        self.end_line()
        print(f"    {text}", file=self.out, flush=True)

    def download(self, file: IndexFile, done: int, total: int | None) -> None:
        if self.percent_lines and total:
            tenth = min(10, done * 10 // total)
            if tenth != self._last_tenth:
                self._last_tenth = 0 if tenth == 10 else tenth
                print(
                    f"    downloaded {done / total:.0%} of {human_size(total)} ({file.filename})",
                    file=self.out,
                    flush=True,
                )
            return
        if not self.tty:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        if total:
            width = 30
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"    [{bar}] {done / total:4.0%} {human_size(done)} of {human_size(total)}"
        else:
            text = f"    {human_size(done)}"
        print(f"\r{text}", end="", file=self.out, flush=True)
        self._drawn = True

    def end_line(self) -> None:
        if self._drawn:
            print(file=self.out)
            self._drawn = False


def _confirm(plan: Plan, args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationNeededError(
            "fix changes the environment and asks first, but there is no terminal to ask on",
            hint="pass --yes to go ahead without asking (or --dry-run to only look)",
        )
    answer = input(f"Install these into {plan.environment}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmedError("nothing was changed (not confirmed)")


def _summary(result: FixResult, log: Path, out: TextIO) -> None:
    colour = use_colour(out)
    plan = result.plan
    done = f"Installed torch {plan.torch.version} into {plan.environment} in {result.seconds:.1f} s"
    print(paint(done, "green", colour), file=out)
    facts = result.verification.facts
    cuda = facts.get("cuda")
    print(
        f"  verified: torch {facts.get('version')}" + (f", CUDA {cuda}" if cuda else ", CPU build"), file=out
    )
    if result.bench is not None:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in list(result.bench.figures.items())[:3])
        print(
            f"  benchmark: passed on {result.bench.device_name or result.bench.device}; {figures}", file=out
        )
    print(f"  log: {log}", file=out)


def _ctrl_c_restores() -> None:
    """Make Ctrl-C raise KeyboardInterrupt even where the parent ignored SIGINT.

    A process started with SIGINT ignored (under `nohup`, by some CI runners and service
    managers) inherits that, and Python then installs no handler: Ctrl-C, and the tray's cancel
    (a SIGINT to the main thread), would do nothing. During a fix they must always mean "stop
    and restore".
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def handle(args: argparse.Namespace) -> int:
    err = sys.stderr
    reporter = ConsoleReporter(err, percent_lines=args.tray_child)
    _ctrl_c_restores()
    if args.tray_child:
        cancel_on_stdin_eof()
    env = environment_to_change(args.env)
    if args.dry_run:
        # Read-only: no lock, and an interrupted earlier fix is only mentioned, not restored.
        if pending_snapshots(env):
            print("  note: an earlier fix was interrupted; a real run restores it first", file=sys.stdout)
        marker = externally_managed_marker(env)
        if marker is not None and not args.break_system_packages:
            print(
                f"  note: {env.root} is externally managed (PEP 668, {marker}); a real run needs "
                "--break-system-packages",
                file=sys.stdout,
            )
        return _fix(args, env, reporter)
    # Before the lock and the plan: a usage error, told before any download or question.
    check_externally_managed(env, _options(args))
    try:
        # The lock is held from before planning until the end: the plan is made from the files as
        # they are after an interrupted earlier fix was restored, and nobody changes them meanwhile.
        with fix_session(env, reporter):
            return _fix(args, env, reporter)
    except KeyboardInterrupt:
        reporter.end_line()
        raise FixFailedError("interrupted before anything was changed") from None


def _options(args: argparse.Namespace) -> FixOptions:
    return FixOptions(
        run_bench=not args.no_bench,
        allow_conda_mix=args.allow_conda_mix,
        break_system_packages=args.break_system_packages,
    )


def _fix(args: argparse.Namespace, env: PythonEnv, reporter: ConsoleReporter) -> int:
    err = reporter.out
    prepared = prepare(args, env=env, progress=err if err.isatty() else None)
    plan = prepared.plan
    render(plan, sys.stdout)
    if plan.changes_nothing:
        print("Nothing to do: the environment already has these builds.", file=sys.stdout)
        return EXIT_OK
    options = _options(args)
    check_conda(prepared.target.installed, options)
    check_user_site(env, prepared.target.installed)
    uv = find_uv()
    name, why = resolve_backend(args.installer, uv_path=uv, env=env)
    backend = make_backend(name, uv_path=uv, break_system_packages=options.break_system_packages)
    print(f"  installer: {name} ({why})", file=sys.stdout)
    if args.dry_run:
        placeholders = [Path("<download>") / f.filename for f in plan.files]
        for argv in backend.commands(env, placeholders, index_url=plan.index_url):
            print("  would run: " + " ".join(argv), file=sys.stdout)
        if plan.index_url:
            # Not on the command line, where other users could read credentials in it.
            print(
                f"  with {backend.index_variable}={redact(plan.index_url)} (dependencies come from there)",
                file=sys.stdout,
            )
        return EXIT_OK
    _confirm(plan, args)

    # A unique, private name per run (two fixes in one second never share a log); old ones pruned.
    log_path, log = create_log("fix", env.root.name or "env")
    with log:
        log.write(
            f"torchdoctor fix {env.root}\nplan: {' '.join(plan.requirements)} from {redact(plan.index_url)}\n"
        )
        # What was there before: the report's fix history shows what each fix changed.
        log.write(f"before: {'torch ' + plan.current if plan.current else 'no torch'}\n")
        log.write(f"reason: {plan.reason}\ninstaller: {name} ({why})\n")
        try:
            result = apply_plan(
                env,
                plan,
                prepared.hardware,
                knowledge=load_knowledge(),
                backend=backend,
                reporter=reporter,
                log=log,
                options=options,
            )
        except TorchdoctorError as exc:
            reporter.end_line()
            log.write(f"FAILED: {exc}\n")
            exc.hint = (
                f"{exc.hint}; the full log is {log_path}" if exc.hint else f"the full log is {log_path}"
            )
            raise
    _summary(result, log_path, sys.stdout)
    return EXIT_OK
