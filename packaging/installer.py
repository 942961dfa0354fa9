"""Compiles the per-user Windows installer (packaging/windows/installer.nsi) with makensis.

    python packaging/installer.py --app dist/torchdoctor [--out DIR]
    python packaging/installer.py --placeholder [--out DIR]

makensis runs on Linux too (Debian's `nsis`), so CI compiles the script on every run. Where the
frozen Windows app is absent, `--placeholder` packs a small stand-in folder with the two program
names in it: the script, its pages, its registry writes and its uninstaller still compile.
`defines` reads the script's `!define` lines, so a test can hold its Run value to autostart's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
SCRIPT: Final = REPO / "packaging" / "windows" / "installer.nsi"
PROGRAMS: Final = ("torchdoctor.exe", "torchdoctorw.exe")
COMPILE_TIMEOUT_S: Final = 600.0
_DEFINE: Final = re.compile(r"""^\s*!define\s+(\w+)\s+(?:"([^"]*)"|'([^']*)')\s*$""")


class InstallerError(RuntimeError):
    """makensis is missing or failed; the message says which, with its last lines."""


def defines(script: Path = SCRIPT) -> dict[str, str]:
    """The script's top-level `!define NAME "value"` lines (also '…'-quoted), as written."""
    found: dict[str, str] = {}
    for line in script.read_text(encoding="utf-8").splitlines():
        match = _DEFINE.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2) if match.group(2) is not None else match.group(3))
    return found


def expand(text: str, values: dict[str, str]) -> str:
    """`${NAME}` (a define) and `$NAME` (a variable such as `$INSTDIR`) replaced from `values`,
    repeatedly, as a define may use another; names not in `values` are kept."""
    for _ in range(10):
        new = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def nsis_version(version: str) -> str:
    """A version makensis' VIProductVersion accepts once `.0` is added: three numbers."""
    numbers = [*re.findall(r"\d+", version.split("+", maxsplit=1)[0]), "0", "0", "0"][:3]
    return ".".join(str(int(n)) for n in numbers)


def placeholder_app(folder: Path) -> Path:
    """A stand-in for the frozen Windows app: the two program names, each a short text file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PROGRAMS:
        (folder / name).write_text(
            "placeholder: the frozen Windows app is built on Windows (packaging/windows/torchdoctor.spec)\n",
            encoding="utf-8",
        )
    return folder


def makensis() -> str:
    found = shutil.which("makensis")
    if found is None:
        raise InstallerError(
            "makensis was not found (Debian: apt-get install nsis; scripts/desktop-deps does)"
        )
    return found


def makensis_argv(app: Path, out_file: Path, version: str, program: str = "makensis") -> list[str]:
    # -V2: warnings and errors only; -WX: a warning (an unused define, a missing file) fails the build.
    return [
        program,
        "-V2",
        "-WX",
        f"-DAPP_DIR={app}",
        f"-DVERSION={nsis_version(version)}",
        f"-DOUT_FILE={out_file}",
        str(SCRIPT),
    ]


def compile_installer(app: Path, out_file: Path, version: str) -> Path:
    """Runs makensis and returns the installer's path."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            makensis_argv(app, out_file, version, makensis()),
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallerError(f"makensis did not finish within {COMPILE_TIMEOUT_S:g} s") from exc
    if done.returncode != 0 or not out_file.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise InstallerError(f"makensis exited {done.returncode}:\n{tail}")
    return out_file


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO / "packaging"))
    from freeze import project_version  # noqa: PLC0415 - a sibling script, not a package

    parser = argparse.ArgumentParser(description="Compile the Windows installer with makensis.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--app", type=Path, help="the frozen app folder (dist/torchdoctor)")
    source.add_argument("--placeholder", action="store_true", help="pack a small stand-in app")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the installer goes")
    args = parser.parse_args(argv)
    version = project_version()
    app = placeholder_app(args.out / "placeholder-app") if args.placeholder else args.app
    try:
        path = compile_installer(app, args.out / f"torchdoctor-{version}-setup.exe", version)
    except InstallerError as exc:
        print(f"installer: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
