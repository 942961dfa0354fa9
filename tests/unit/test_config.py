"""config.toml: defaults, every key, and one readable error (file, line, key) for each mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchdoctor.service import paths
from torchdoctor.service.config import (
    DEFAULT_INTERVAL,
    DEFAULT_SCAN_DEPTH,
    DEFAULT_SCAN_SECONDS,
    MAX_CONFIG_BYTES,
    Settings,
    load_settings,
)
from torchdoctor.service.errors import ConfigError, UnreadableError


def write(text: str) -> Path:
    file = paths.config_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def test_a_missing_file_means_the_defaults() -> None:
    assert not paths.config_file().exists()
    settings = load_settings()
    assert settings == Settings()
    assert settings.scan_depth == DEFAULT_SCAN_DEPTH == 4
    assert settings.scan_seconds == DEFAULT_SCAN_SECONDS == 3.0
    assert settings.interval == DEFAULT_INTERVAL == 1800
    assert settings.roots == settings.environments == settings.exclude == ()


def test_every_key_is_read_from_the_platformdirs_config_file(tmp_path: Path) -> None:
    file = write(
        f"""
# torchdoctor settings
roots = ["{tmp_path / "code"}", "~/projects"]
environments = ["{tmp_path / "proj" / ".venv"}"]
exclude = ["~/old"]
scan_depth = 6
scan_seconds = 1.5
interval = 600
"""
    )
    settings = load_settings()
    assert settings.roots == (tmp_path / "code", Path.home() / "projects")
    assert settings.environments == (tmp_path / "proj" / ".venv",)
    assert settings.exclude == (Path.home() / "old",)
    assert (settings.scan_depth, settings.scan_seconds, settings.interval) == (6, 1.5, 600)
    assert settings.source == file


def test_an_explicit_path_wins_over_the_config_folder(tmp_path: Path) -> None:
    write("scan_depth = 2\n")
    other = tmp_path / "other.toml"
    other.write_text("scan_depth = 7\n")
    assert load_settings(other).scan_depth == 7
    assert load_settings().scan_depth == 2


def test_integer_seconds_are_accepted() -> None:
    write("scan_seconds = 5\n")
    settings = load_settings()
    assert settings.scan_seconds == 5.0
    assert isinstance(settings.scan_seconds, float)


def test_unknown_keys_are_named_with_their_line() -> None:
    file = write('roots = []\nexlude = ["~/old"]\nscan_dept = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert str(file) in message
    assert "line 2" in message
    assert "`exlude`" in message
    assert "`scan_dept`" in message
    assert caught.value.hint is not None
    assert "exclude" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "line", "key", "expected"),
    [
        ('\nscan_depth = "4"\n', 2, "scan_depth", "whole number"),
        ("scan_depth = -1\n", 1, "scan_depth", "between 0 and 32"),
        ("scan_depth = true\n", 1, "scan_depth", "whole number"),
        ("scan_depth = 4.5\n", 1, "scan_depth", "whole number"),
        ("scan_seconds = 0\n", 1, "scan_seconds", "above 0"),
        ('scan_seconds = "3"\n', 1, "scan_seconds", "above 0"),
        ("interval = 0\n", 1, "interval", "at least 1"),
        ('roots = "~/code"\n', 1, "roots", "a list of folder paths"),
        ("roots = [1]\n", 1, "roots", "a list of folder paths"),
        ('\n\nenvironments = ["relative/env"]\n', 3, "environments", "absolute"),
        ('exclude = [""]\n', 1, "exclude", "a list of folder paths"),
    ],
)
def test_wrong_values_name_file_line_and_key(text: str, line: int, key: str, expected: str) -> None:
    file = write(text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{file}, line {line}: `{key}` must be ")
    assert expected in message
    assert "\n" not in message


def test_malformed_toml_names_the_line_and_the_key() -> None:
    file = write("roots = []\nscan_depth = four\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{file}, line 2: `scan_depth`: not valid TOML")
    assert "invalid value" in message


def test_malformed_toml_without_a_key_still_names_the_line() -> None:
    file = write('roots = ["~/a"\nscan_depth = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    # The unclosed list is reported at the next line; that line's key is not at fault.
    assert message.startswith(f"{file}, line 2: not valid TOML")
    assert "`scan_depth`" not in message


def test_a_file_that_is_not_utf8_is_a_config_error() -> None:
    file = paths.config_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"roots = ['\xff']\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings()


def test_a_folder_in_place_of_the_file_is_a_config_error() -> None:
    paths.config_file().mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings()


def test_an_unreadable_file_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    file = write("scan_depth = 3\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(UnreadableError, match="permission denied") as caught:
        load_settings()
    assert str(file) in str(caught.value)


def test_config_errors_exit_2_through_the_cli() -> None:
    write("scan_depth = 'deep'\n")
    from torchdoctor.agent.cli import main

    assert main(["envs", "--no-discover"]) == 2


def test_a_fifo_or_a_huge_file_as_config_is_one_sentence_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came: never
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings(fifo)
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_settings(huge)
