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


def add_index_base_argument(parser: argparse.ArgumentParser) -> None:
    """--index-base URL, as plan, fix and the tray take it."""
    from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE  # noqa: PLC0415 - keep this module light

    parser.add_argument(
        "--index-base",
        default=DEFAULT_INDEX_BASE,
        metavar="URL",
        help=f"the folder holding one index per variant (default {DEFAULT_INDEX_BASE})",
    )
