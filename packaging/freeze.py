"""Builds the one-folder frozen app with PyInstaller (packaging/windows/torchdoctor.spec).

    python packaging/freeze.py [--dist DIR] [--work DIR]

The spec asks this module what to put in the app, so the lists live in code that ruff, mypy and the
tests read: `hidden_imports` (what PyInstaller cannot see because it is imported by name at run
time), `data_files` (knowledge tables, benchmark scripts, icons) and `uv_binary` (the frozen app has
no Python of its own to run pip with, so `fix` uses the uv it carries, found beside the program by
`find_uv`).

`cached_app` builds once per set of inputs into `.cache/frozen/<digest>/` and reuses it: the tests,
the benchmark and CI all ask for it, and a build takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
SPEC: Final = REPO / "packaging" / "windows" / "torchdoctor.spec"
APP_NAME: Final = "torchdoctor"
# Windows only: the same app linked for the GUI subsystem, so the tray (Start menu, autostart, the
# installer's last page) opens no console window; torchdoctor.exe stays a console program for the CLI.
WINDOWED_NAME: Final = "torchdoctorw"
# The source folders and the package each becomes (pyproject's [tool.setuptools.package-dir]).
SOURCE_PACKAGES: Final = {
    "agent": "torchdoctor.agent",
    "service": "torchdoctor.service",
    "icons": "torchdoctor.icons",
}
# Not modules of the app: scripts that run in the target environment's own interpreter.
_NOT_MODULES: Final = ("service/bench/scripts",)
# Everything whose change means a new build.
_BUILD_INPUTS: Final = ("agent", "service", "icons", "packaging", "pyproject.toml")
BUILD_TIMEOUT_S: Final = 1200.0


def program_name(name: str, platform: str = sys.platform) -> str:
    return f"{name}.exe" if platform == "win32" else name


def our_modules(repo: Path = REPO) -> list[str]:
    """Every module of ours, by its installed name. All of them, because the CLI imports each command
    by name (`torchdoctor.agent.commands.<name>`) and modules import lazily on rare paths."""
    names: list[str] = []
    for folder, package in SOURCE_PACKAGES.items():
        for path in sorted((repo / folder).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            if rel.startswith(_NOT_MODULES):
                continue
            parts = list(path.relative_to(repo / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join([package, *parts]))
    return names


def hidden_imports(platform: str = sys.platform) -> list[str]:
    """What the libraries import by name at run time, for `platform` (a `sys.platform` value)."""
    if platform == "win32":
        # pystray picks `pystray._<backend>` with importlib; desktop-notifier imports its backend
        # module per OS; platformdirs imports its OS module.
        third_party = [
            "pystray._win32",
            "desktop_notifier.backends.winrt",
            "platformdirs.windows",
        ]
    else:
        third_party = [
            "pystray._appindicator",
            "pystray._gtk",
            "pystray._xorg",
            "desktop_notifier.backends.dbus",
            "platformdirs.unix",
        ]
    # pynvml is imported inside the probe only when the NVML library is there.
    return [*third_party, "desktop_notifier.backends.dummy", "pynvml", *our_modules()]


def data_files(repo: Path = REPO) -> list[tuple[str, str]]:
    """(source file, folder in the app) pairs, in PyInstaller's `datas` form, for the files our code
    reads through importlib.resources: they must sit where their package is."""
    globs = (
        ("service/facts/data", "*.json", "torchdoctor/service/facts/data"),
        ("service/bench/scripts", "*.py", "torchdoctor/service/bench/scripts"),
        ("icons", "*.png", "torchdoctor/icons"),
        ("icons", "*.ico", "torchdoctor/icons"),
    )
    return [
        (str(path), dest) for folder, pattern, dest in globs for path in sorted((repo / folder).glob(pattern))
    ]


def uv_binary() -> Path:
    """The uv executable of the `uv` wheel installed beside the build's Python (the `packaging` extra)."""
    from uv import find_uv_bin  # noqa: PLC0415 - only a build needs the uv wheel

    return Path(find_uv_bin())


def project_version(repo: Path = REPO) -> str:
    with (repo / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def windows_version_tuple(version: str) -> tuple[int, int, int, int]:
    """`0.1.0` -> (0, 1, 0, 0): Windows' version resource holds four 16-bit numbers."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+", maxsplit=1)[0])[:4]]
    padded = [*numbers, 0, 0, 0, 0][:4]
    return (padded[0], padded[1], padded[2], padded[3])


def version_resource(version: str) -> str:
    """The text of a PyInstaller version file: what Explorer shows under Properties -> Details."""
    numbers = windows_version_tuple(version)
    strings = {
        "CompanyName": "torchdoctor developers",
        "FileDescription": "torchdoctor: PyTorch builds matched to this machine's GPU",
        "FileVersion": version,
        "InternalName": APP_NAME,
        "LegalCopyright": "MIT License",
        "OriginalFilename": f"{APP_NAME}.exe",
        "ProductName": APP_NAME,
        "ProductVersion": version,
    }
    entries = ",\n          ".join(f"StringStruct({k!r}, {v!r})" for k, v in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={numbers}, prodvers={numbers}, mask=0x3F, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {entries}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])]),
  ]
)
"""


def stage_sources(dest: Path, repo: Path = REPO) -> Path:
    """Copies our folders into `dest/torchdoctor/<name>` and returns `dest`, for the spec's `pathex`.

    PyInstaller finds modules by walking paths, and cannot follow the editable install's import
    hook that maps `torchdoctor.agent` to `agent/`; a real tree with the installed names can.
    Copies, not links: Windows needs a privilege for symbolic links.
    """
    root = dest / "torchdoctor"
    if root.exists():
        shutil.rmtree(root)
    for folder in SOURCE_PACKAGES:
        shutil.copytree(repo / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def input_digest(repo: Path = REPO, *, python: str = sys.executable) -> str:
    """A digest of everything a build depends on of ours, and of the interpreter that builds it."""
    digest = hashlib.sha256(python.encode())
    for top in _BUILD_INPUTS:
        base = repo / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pyinstaller_argv(dist: Path, work: Path, python: str = sys.executable) -> list[str]:
    return [
        python,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]


class BuildError(RuntimeError):
    """PyInstaller failed; the message ends with its last lines."""


def build(dist: Path, work: Path, *, python: str = sys.executable) -> Path:
    """Runs PyInstaller on the spec and returns the app folder (`dist/torchdoctor`)."""
    log = work / "pyinstaller.log"
    work.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            pyinstaller_argv(dist, work, python),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=False,
            cwd=REPO,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise BuildError(f"PyInstaller exited {done.returncode} (log: {log}):\n{tail}")
    return dist / APP_NAME


def cached_app(cache: Path = REPO / ".cache" / "frozen", *, python: str = sys.executable) -> Path:
    """The app folder for the current sources, built on first use and reused until an input changes.

    A finished build is marked by a `built` file written last, so a build killed half-way is redone;
    older builds are removed, as each is ~100 MB.
    """
    key = input_digest(python=python)
    folder = cache / key
    app = folder / "dist" / APP_NAME
    if (folder / "built").is_file() and app.is_dir():
        return app
    if folder.exists():
        shutil.rmtree(folder)
    build(folder / "dist", folder / "work", python=python)
    shutil.rmtree(folder / "work", ignore_errors=True)
    (folder / "built").write_text(key + "\n", encoding="utf-8")
    for old in cache.iterdir():
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return app


def tree_size(folder: Path) -> int:
    """Bytes on disk of the files under `folder` (links counted once, as themselves)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the one-folder frozen torchdoctor app.")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="where the app folder goes")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "pyinstaller", help="build folder")
    args = parser.parse_args(argv)
    try:
        app = build(args.dist, args.work)
    except (BuildError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"freeze: {exc}", file=sys.stderr)
        return 1
    print(f"{app} ({tree_size(app) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
