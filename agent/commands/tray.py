"""`torchdoctor tray`: the icon in the notification area, checking in the background."""

from __future__ import annotations

import argparse
import math
import os
import sys

from torchdoctor.agent.args import add_index_base_argument
from torchdoctor.agent.commands.check import add_target_arguments
from torchdoctor.service import paths
from torchdoctor.service.config import DEFAULT_INTERVAL, load_settings
from torchdoctor.service.errors import EXIT_OK, BadInputError
from torchdoctor.service.install.index import validate_index_base
from torchdoctor.service.monitor.scheduler import Timing


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "tray",
        help="run the tray icon: checks in the background, notifies, repairs from its menu",
        description=(
            "Show torchdoctor in the notification area. It checks every environment soon after it "
            "starts and then every --interval seconds, notifies when a driver update breaks one, and "
            "reinstalls a fitting torch from its menu. A second start asks the running tray to check now."
        ),
    )
    add_target_arguments(parser)
    parser.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help=f"seconds between checks (default: `interval` in config.toml, else {DEFAULT_INTERVAL:g})",
    )
    add_index_base_argument(parser)
    # For tests and support sessions: how soon after start the first check runs.
    parser.add_argument("--first-check-after", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.set_defaults(handler=handle)


def _positive(value: float, option: str, minimum: float) -> float:
    if not math.isfinite(value) or value < minimum:
        raise BadInputError(f"{option} must be a number of seconds of at least {minimum:g}, not {value:g}")
    return value


def handle(args: argparse.Namespace) -> int:
    # Light imports first: a second start only knocks and exits, and bad input fails before any UI.
    from torchdoctor.agent.tray.instance import AlreadyRunning, Instance, knock  # noqa: PLC0415
    from torchdoctor.agent.tray.logs import setup_logging  # noqa: PLC0415
    from torchdoctor.service.monitor.cycle import CycleOptions  # noqa: PLC0415

    interval = _positive(args.interval, "--interval", 1.0) if args.interval is not None else None
    if interval is None:
        interval = float(load_settings().interval)  # a bad config.toml: one line naming it, exit 2
    first = _positive(args.first_check_after, "--first-check-after", 0.0)
    index_base = validate_index_base(args.index_base)
    if args.hardware is not None and not args.hardware.is_file():
        raise BadInputError(f"--hardware {args.hardware}: no such file")
    instance = Instance(paths.state_dir())
    try:
        instance.acquire()
    except AlreadyRunning:
        asked = knock(paths.state_dir())
        message = "asked it to check now" if asked else "it did not answer (it may be starting)"
        if sys.stderr is not None:
            print(f"torchdoctor tray is already running; {message}", file=sys.stderr)
        return EXIT_OK
    try:
        log_path = setup_logging()
        if (
            sys.platform == "linux"
            and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")
        ):
            raise BadInputError(
                "there is no desktop to show a tray icon on (DISPLAY is not set)",
                hint="start the tray from a desktop session; `torchdoctor check` works without one",
            )
        from torchdoctor.agent.tray.app import TrayApp, TrayOptions  # noqa: PLC0415 - pystray, Pillow

        options = TrayOptions(
            cycle=CycleOptions(
                hardware_file=args.hardware.resolve() if args.hardware else None,
                env_paths=tuple(args.env),
                discover=not args.no_discover,
                index_base=index_base,
            ),
            timing=Timing(interval_s=interval, first_delay_s=first),
        )
        if log_path is not None and sys.stderr is not None and sys.stderr.isatty():
            print(f"torchdoctor tray: running; log: {log_path}", file=sys.stderr)
        return TrayApp(options, instance).run()
    finally:
        instance.release()
