"""Arguments several commands share, spelled once (a light module: no service imports)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_env_arguments(parser: argparse.ArgumentParser, *, verb: str) -> None:
    """--env PATH (repeatable) and --no-discover, as check, envs and the tray take them."""
    parser.add_argument(
        "--env",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="an environment's root or python executable (repeatable); listed first",
    )
    parser.add_argument(
        "--no-discover",
        action="store_true",
        help=f"{verb} only the --env environments and config.toml's `environments`",
    )


def add_hardware_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hardware",
        type=Path,
        metavar="FILE",
        help="read this hardware file instead of probing (also: $TORCHDOCTOR_HARDWARE)",
    )
