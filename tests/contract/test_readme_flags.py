"""Every option of every command is in the README (users read it, not the parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from torchdoctor.agent.cli import COMMANDS, build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _options(command: str) -> list[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        option
        for action in sub.choices[command]._actions
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_in_the_readme(command: str) -> None:
    options = _options(command)
    missing = [o for o in options if f"torchdoctor {command}" in README and o not in README]
    assert f"torchdoctor {command}" in README
    assert not missing, f"{command}: {missing} are not in README.md"
