"""The user's settings: `config.toml` in the platformdirs config folder (see service/paths.py).

Every key is optional; a missing file means the defaults. The file is read with tomllib and checked
strictly: a typo must not be silently ignored (a misspelt `exclude` would scan what the user meant
to hide), so unknown keys and wrong types raise ConfigError naming the file, the line and the key.

    roots = ["~/code", "D:/projects"]    # extra folders to search for venvs
    environments = ["~/proj/.venv"]       # environments always checked, found or not
    exclude = ["~/old"]                   # never reported, never searched
    scan_depth = 4                        # how deep below the home folder (and each root) to look
    scan_seconds = 3.0                    # time budget of that search
    interval = 1800                       # seconds between the tray's checks
"""

from __future__ import annotations

import contextlib
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from torchdoctor.service import paths
from torchdoctor.service.errors import ConfigError, UnreadableError

DEFAULT_SCAN_DEPTH: Final = 4
DEFAULT_SCAN_SECONDS: Final = 3.0
DEFAULT_INTERVAL: Final = 1800
MAX_SCAN_DEPTH: Final = 32

_PATH_LIST_KEYS: Final = ("roots", "environments", "exclude")
_KNOWN_KEYS: Final = (*_PATH_LIST_KEYS, "scan_depth", "scan_seconds", "interval")
# tomllib (3.11) puts the position only into the message: "Invalid value (at line 3, column 14)".
_POSITION_RE: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_KEY_AT_LINE_RE: Final = re.compile(r"^[ \t]*([A-Za-z0-9_.\"'-]+)[ \t]*=")


@dataclass(frozen=True, slots=True)
class Settings:
    roots: tuple[Path, ...] = ()
    environments: tuple[Path, ...] = ()
    exclude: tuple[Path, ...] = ()
    scan_depth: int = DEFAULT_SCAN_DEPTH
    scan_seconds: float = DEFAULT_SCAN_SECONDS
    interval: int = DEFAULT_INTERVAL
    source: Path | None = None  # the file these came from; None for the defaults


MAX_CONFIG_BYTES: Final = 1 << 20


def load_settings(path: Path | None = None) -> Settings:
    """Read `path` (default: paths.config_file()); a missing file gives the defaults."""
    file = path if path is not None else paths.config_file()
    # Looked at before it is opened: opening a FIFO would block forever, /dev/zero never ends.
    with contextlib.suppress(OSError):
        info = file.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"the settings file {file} is larger than 1 MiB; it cannot be a config.toml")
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"the settings file {file} is not a regular file (a device, pipe or socket)")
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return Settings()
    except PermissionError as exc:
        raise UnreadableError(
            f"cannot read the settings file {file}: permission denied",
            hint="give your user read access to it, or move it away to use the defaults",
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"the settings file {file} is a folder, not a file") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not UTF-8 text", hint="save it as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(file, text, exc) from exc
    return settings_from_mapping(data, source=file, text=text)


def settings_from_mapping(data: Mapping[str, object], *, source: Path, text: str = "") -> Settings:
    """Validate parsed TOML; `text` is the file's text, used only to name the line at fault."""
    unknown = sorted(k for k in data if k not in _KNOWN_KEYS)
    if unknown:
        names = ", ".join(f"`{k}`" for k in unknown)
        raise ConfigError(
            f"{_where(source, text, unknown[0])}unknown setting{'s' if len(unknown) > 1 else ''} {names}",
            hint="known settings: " + ", ".join(_KNOWN_KEYS),
        )
    lists = {key: _path_list(data, key, source, text) for key in _PATH_LIST_KEYS}
    return Settings(
        roots=lists["roots"],
        environments=lists["environments"],
        exclude=lists["exclude"],
        scan_depth=_int(
            data, "scan_depth", DEFAULT_SCAN_DEPTH, low=0, high=MAX_SCAN_DEPTH, source=source, text=text
        ),
        scan_seconds=_seconds(data, "scan_seconds", source, text),
        interval=_int(data, "interval", DEFAULT_INTERVAL, low=1, high=None, source=source, text=text),
        source=source,
    )


def _line_of(text: str, key: str) -> int | None:
    # [ \t]*, not \s*: the match must start on the key's own line.
    pattern = re.compile(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _where(source: Path, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{source}, line {line}: " if line else f"{source}: "


def _bad(source: Path, text: str, key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(
        f"{_where(source, text, key)}`{key}` must be {expected}, not {value!r}",
        hint=f"fix or remove `{key}` in {source.name}",
    )


def _path_list(data: Mapping[str, object], key: str, source: Path, text: str) -> tuple[Path, ...]:
    value = data.get(key, [])
    expected = 'a list of folder paths, e.g. ["~/code"]'
    if not isinstance(value, list):
        raise _bad(source, text, key, expected, value)
    result: list[Path] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _bad(source, text, key, expected, item)
        path = Path(item.strip()).expanduser()
        # A relative path would depend on wherever the tray happened to start.
        if not path.is_absolute():
            raise _bad(source, text, key, "absolute paths (or start with ~)", item)
        result.append(path)
    return tuple(result)


def _int(
    data: Mapping[str, object],
    key: str,
    default: int,
    *,
    low: int,
    high: int | None,
    source: Path,
    text: str,
) -> int:
    value = data.get(key, default)
    # bool is an int in Python; `scan_depth = true` is a mistake, not 1.
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None and isinstance(value, int):
        ok = value <= high
    if not ok or not isinstance(value, int):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _bad(source, text, key, f"a whole number {bounds}", value)
    return value


def _seconds(data: Mapping[str, object], key: str, source: Path, text: str) -> float:
    value = data.get(key, DEFAULT_SCAN_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _bad(source, text, key, "a number of seconds above 0 (e.g. 3.0)", value)
    return float(value)


def _decode_error(source: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = _POSITION_RE.search(message)
    reason = _POSITION_RE.sub("", message) if match else message
    where = f"{source}: "
    if match:
        line_no = int(match.group(1))
        where = f"{source}, line {line_no}: "
        lines = text.splitlines()
        if 0 < line_no <= len(lines):
            key = _KEY_AT_LINE_RE.match(lines[line_no - 1])
            # Name the key only when the fault lies in its value, not in the key itself (an
            # unclosed list on the line above is reported at the next key's first column).
            if key and int(match.group(2)) > key.end():
                where += f"`{key.group(1).strip(chr(34) + chr(39))}`: "
    return ConfigError(
        f"{where}not valid TOML ({reason[:1].lower() + reason[1:]})",
        hint="fix that line, or move the file away to use the defaults",
    )
