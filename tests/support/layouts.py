"""Python environment layouts built on disk, as the real tools leave them, without the interpreters.

Each builder writes the files torchdoctor reads (pyvenv.cfg, conda-meta, patchlevel.h, site-packages,
the interpreter's name and place) and returns the root. Interpreters are stand-in binaries: a few
bytes of ELF or MZ header, so they are not mistaken for scripts (pyenv shims are scripts).

Windows layouts are built on this Linux disk with their Windows names (`Scripts/python.exe`,
`Lib/site-packages`); the code under test is told `platform=Platform.WINDOWS`.

Also here: a fake PEP 514 registry and a fake `run` for `py -0p` and interpreter probes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torchdoctor.service.envs.winreg_reader import Hive
from torchdoctor.service.proc import Completed

ELF_STUB = b"\x7fELF\x02\x01\x01\x00stand-in interpreter\n"
MZ_STUB = b"MZ\x90\x00stand-in interpreter\n"


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def stub_exe(path: Path, data: bytes = ELF_STUB) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755)
    return path


def link(path: Path, target: str | Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def fill_site_packages(site: Path, *, pip: bool, pip_as: str = "both") -> Path:
    """`pip_as`: "package" (pip/), "dist-info" (pip-24.0.dist-info/) or "both", as installers leave it."""
    site.mkdir(parents=True, exist_ok=True)
    if pip:
        if pip_as in ("package", "both"):
            (site / "pip").mkdir(exist_ok=True)
            (site / "pip" / "__init__.py").write_text('__version__ = "24.0"\n')
        if pip_as in ("dist-info", "both"):
            (site / "pip-24.0.dist-info").mkdir(exist_ok=True)
            (site / "pip-24.0.dist-info" / "METADATA").write_text("Name: pip\nVersion: 24.0\n")
    # Something that is not pip but looks close.
    (site / "pipx-1.0.dist-info").mkdir(exist_ok=True)
    return site


def patchlevel(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "/* Python version identification scheme. */\n"
        "#define PY_MAJOR_VERSION        3\n"
        f'#define PY_VERSION              "{version}"\n'
    )
    return path


def pyvenv_cfg(root: Path, lines: Sequence[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pyvenv.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def posix_venv(
    root: Path,
    version: str = "3.12.4",
    *,
    pip: bool = True,
    writer: str = "venv",
    base: Path | None = None,
) -> Path:
    """A Linux venv. `writer`: "venv" (version = ...), "uv" (version_info = ..., no pip),
    "virtualenv" (version_info = 3.12.4.final.0), "none" (no version line, as very old tools)."""
    mm = minor(version)
    home = base.parent if base is not None else Path("/opt/python") / mm / "bin"
    cfg = {
        "venv": [f"home = {home}", "include-system-site-packages = false", f"version = {version}"],
        "uv": [f"home = {home}", "implementation = CPython", "uv = 0.13.9", f"version_info = {version}"],
        "virtualenv": [f"home = {home}", "implementation = CPython", f"version_info = {version}.final.0"],
        "none": [f"home = {home}", "include-system-site-packages = false"],
    }[writer]
    pyvenv_cfg(root, cfg)
    bin_dir = root / "bin"
    if base is not None:
        link(bin_dir / "python", base)
    else:
        stub_exe(bin_dir / "python")
    link(bin_dir / "python3", "python")
    link(bin_dir / f"python{mm}", "python")
    (bin_dir / "activate").write_text("# activate\n")
    fill_site_packages(root / "lib" / f"python{mm}" / "site-packages", pip=pip and writer != "uv")
    link(root / "lib64", "lib")
    return root


def windows_venv(root: Path, version: str = "3.12.4", *, pip: bool = True) -> Path:
    """A Windows venv as `python -m venv` makes it: Scripts\\python.exe, Lib\\site-packages."""
    pyvenv_cfg(
        root,
        [
            rf"home = C:\Users\ana\AppData\Local\Programs\Python\Python{minor(version).replace('.', '')}",
            "include-system-site-packages = false",
            f"version = {version}",
        ],
    )
    stub_exe(root / "Scripts" / "python.exe", MZ_STUB)
    stub_exe(root / "Scripts" / "pythonw.exe", MZ_STUB)
    (root / "Scripts" / "activate.bat").write_text("@echo off\n")
    fill_site_packages(root / "Lib" / "site-packages", pip=pip)
    return root


def posix_install(
    root: Path, version: str = "3.12.4", *, pip: bool = True, with_patchlevel: bool = True
) -> Path:
    """A Python install prefix (pyenv version, uv-managed, /usr/local): bin/python3.X and links."""
    mm = minor(version)
    stub_exe(root / "bin" / f"python{mm}")
    link(root / "bin" / "python3", f"python{mm}")
    link(root / "bin" / "python", f"python{mm}")
    stub_exe(root / "bin" / f"python{mm}-config", b"#!/bin/sh\n")
    (root / "lib" / f"python{mm}").mkdir(parents=True, exist_ok=True)
    (root / "lib" / f"python{mm}" / "os.py").write_text("# stdlib\n")
    fill_site_packages(root / "lib" / f"python{mm}" / "site-packages", pip=pip)
    if with_patchlevel:
        patchlevel(root / "include" / f"python{mm}" / "patchlevel.h", version)
    return root


def windows_install(
    root: Path, version: str = "3.12.4", *, pip: bool = True, with_patchlevel: bool = False
) -> Path:
    """A python.org-style install folder: python.exe, python312.dll, Lib\\site-packages."""
    stub_exe(root / "python.exe", MZ_STUB)
    stub_exe(root / "pythonw.exe", MZ_STUB)
    stub_exe(root / f"python{minor(version).replace('.', '')}.dll", MZ_STUB)
    stub_exe(root / "python3.dll", MZ_STUB)
    (root / "Lib").mkdir(parents=True, exist_ok=True)
    (root / "Lib" / "os.py").write_text("# stdlib\n")
    fill_site_packages(root / "Lib" / "site-packages", pip=pip)
    (root / "Scripts").mkdir(exist_ok=True)
    if with_patchlevel:
        patchlevel(root / "include" / "patchlevel.h", version)
    return root


def conda_prefix(
    root: Path,
    version: str | None = "3.12.4",
    *,
    windows: bool = False,
    pip: bool = True,
) -> Path:
    """A conda environment (or base): conda-meta/ with a python-X.Y.Z-<build>.json record.

    `version=None` makes an environment without Python (an R or CUDA-tools-only env)."""
    meta = root / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "history").write_text("==> 2024-07-01 12:00:00 <==\n")
    # Records that start with "python" but are not Python itself.
    (meta / "python-dateutil-2.9.0-pyhd8ed1ab_0.json").write_text("{}")
    (meta / "python_abi-3.12-4_cp312.json").write_text("{}")
    if version is None:
        return root
    (meta / f"python-{version}-h5148396_1.json").write_text('{"name": "python"}')
    if windows:
        stub_exe(root / "python.exe", MZ_STUB)
        (root / "Lib").mkdir(exist_ok=True)
        fill_site_packages(root / "Lib" / "site-packages", pip=pip)
    else:
        posix_install(root, version, pip=pip, with_patchlevel=False)
    return root


def conda_base(
    root: Path,
    version: str = "3.12.4",
    *,
    envs: Mapping[str, str | None] | None = None,
    windows: bool = False,
) -> Path:
    """A conda/miniforge base with named environments under envs/ (name -> Python version or None)."""
    conda_prefix(root, version, windows=windows)
    (root / "pkgs" / "python-3.12.4-h5148396_1").mkdir(parents=True)
    for name, env_version in (envs or {}).items():
        conda_prefix(root / "envs" / name, env_version, windows=windows)
    return root


def environments_txt(home: Path, paths: Sequence[Path | str]) -> Path:
    file = home / ".conda" / "environments.txt"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(f"{p}\n" for p in paths))
    return file


def pyenv_root(home: Path, versions: Sequence[str], *, virtualenvs: Mapping[str, str] | None = None) -> Path:
    """~/.pyenv: versions/<v>, shims (scripts), and pyenv-virtualenv envs (name -> version)."""
    root = home / ".pyenv"
    for version in versions:
        posix_install(root / "versions" / version, version)
    for name, version in (virtualenvs or {}).items():
        target = root / "versions" / version / "envs" / name
        posix_venv(target, version, base=root / "versions" / version / "bin" / f"python{minor(version)}")
        link(root / "versions" / name, target)
    for shim in ("python", "python3", "pip"):
        stub_exe(root / "shims" / shim, b'#!/usr/bin/env bash\nexec pyenv exec "$0" "$@"\n')
    stub_exe(root / "libexec" / "pyenv", b"#!/usr/bin/env bash\n")
    return root


def pyenv_win_root(home: Path, versions: Sequence[str]) -> Path:
    """pyenv-win: ~/.pyenv/pyenv-win/versions/<v> holding python.org-style installs."""
    root = home / ".pyenv" / "pyenv-win"
    for version in versions:
        windows_install(root / "versions" / version, version)
    stub_exe(root / "shims" / "python.bat", b"@echo off\n")
    return root


def uv_pythons(folder: Path, keys: Sequence[str], *, minor_links: bool = True) -> Path:
    """uv's managed Pythons: <folder>/cpython-3.12.4-linux-x86_64-gnu and the like, with the
    bookkeeping uv keeps beside them and (uv >= 0.8) minor-version links."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text("")
    (folder / ".cache").mkdir(exist_ok=True)
    (folder / ".gitignore").write_text("*\n")
    for key in keys:
        version = key.split("-")[1].split("+")[0]
        if "-windows-" in key:
            windows_install(folder / key, version, with_patchlevel=True)
        else:
            posix_install(folder / key, version)
        if minor_links:
            parts = key.split("-")
            short = "-".join([parts[0], minor(version), *parts[2:]])
            if short != key and not (folder / short).exists():
                link(folder / short, key)
    return folder


# --- fakes at the boundaries --------------------------------------------------------------------


@dataclass
class FakeRegistry:
    """An in-memory registry: (hive, key) -> subkeys and values; keys compared case-insensitively."""

    keys: dict[tuple[Hive, str], dict[str, str]] = field(default_factory=dict)
    spelled: dict[tuple[Hive, str], str] = field(default_factory=dict)  # key as first written
    denied: set[tuple[Hive, str]] = field(default_factory=set)

    def _norm(self, key: str) -> str:
        return key.casefold()

    def set(self, hive: Hive, key: str, values: Mapping[str, str] | None = None) -> None:
        parts = key.split("\\")
        for i in range(1, len(parts) + 1):
            partial = "\\".join(parts[:i])
            self.keys.setdefault((hive, self._norm(partial)), {})
            self.spelled.setdefault((hive, self._norm(partial)), partial)
        self.keys[(hive, self._norm(key))].update(values or {})

    def deny(self, hive: Hive, key: str) -> None:
        self.denied.add((hive, self._norm(key)))

    def subkeys(self, hive: Hive, key: str) -> Sequence[str]:
        norm = self._norm(key)
        if (hive, norm) in self.denied:
            raise PermissionError(13, "Access is denied")
        names: list[str] = []
        for k_hive, k in self.keys:
            if k_hive is hive and k.startswith(norm + "\\") and "\\" not in k[len(norm) + 1 :]:
                names.append(self.spelled[(k_hive, k)].split("\\")[-1])
        return sorted(set(names))

    def value(self, hive: Hive, key: str, name: str) -> str | None:
        norm = self._norm(key)
        if (hive, norm) in self.denied:
            raise PermissionError(13, "Access is denied")
        return self.keys.get((hive, norm), {}).get(name)

    def register(
        self,
        hive: Hive,
        company: str,
        tag: str,
        *,
        install_path: str | Path | None,
        executable: str | Path | None = None,
        version: str | None = None,
        sys_version: str | None = None,
        base: str = r"Software\Python",
    ) -> None:
        """A PEP 514 registration as installers write it."""
        tag_values = {"DisplayName": f"Python {tag}"}
        if version:
            tag_values["Version"] = version
        if sys_version:
            tag_values["SysVersion"] = sys_version
        self.set(hive, rf"{base}\{company}\{tag}", tag_values)
        install: dict[str, str] = {}
        if install_path is not None:
            install[""] = str(install_path)
        if executable is not None:
            install["ExecutablePath"] = str(executable)
        self.set(hive, rf"{base}\{company}\{tag}\InstallPath", install)


@dataclass
class FakeRun:
    """Stands in for proc.run: answers by the program's file name, records every call."""

    answers: dict[str, Completed | BaseException] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str | Path], *, timeout: float, **_: object) -> Completed:
        args = tuple(os.fspath(a) for a in argv)
        self.calls.append(args)
        answer = self.answers.get(Path(args[0]).name)
        if answer is None:
            raise FileNotFoundError(2, "No such file or directory", args[0])
        if isinstance(answer, BaseException):
            raise answer
        return Completed(args, answer.returncode, answer.stdout, answer.stderr)

    def programs(self) -> list[str]:
        return [Path(c[0]).name for c in self.calls]


def completed(stdout: str, returncode: int = 0) -> Completed:
    return Completed((), returncode, stdout, "")


Runner = Callable[..., Completed]
