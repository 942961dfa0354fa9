"""Real virtual environments for tests, made with uv (fast) and filled with stand-in wheels."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.support.standin import StandIn, build_wheel
from torchdoctor.service.install.installers import installer_environ
from torchdoctor.service.models import EnvKind, Platform, PythonEnv


def uv_bin() -> str:
    """uv from the test venv (it is a test dependency), else from PATH."""
    candidate = Path(sys.executable).with_name("uv")
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed; run scripts/test, which installs the test tools")
    return found


def make_venv(path: Path, *, python: str | None = None, seed_pip: bool = False) -> PythonEnv:
    """A real venv at `path` (no pip unless `seed_pip`) as a PythonEnv."""
    argv = [uv_bin(), "venv", "--quiet", "--python", python or sys.executable, str(path)]
    if seed_pip:
        argv.append("--seed")
    subprocess.run(argv, check=True, env=installer_environ(), timeout=120, capture_output=True)
    return venv_env(path)


def venv_env(root: Path) -> PythonEnv:
    site = sorted((root / "lib").glob("python*/site-packages"))
    cfg = (root / "pyvenv.cfg").read_text()
    version = None
    for line in cfg.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            version = value.strip()
    has_pip = any((sp / "pip").is_dir() for sp in site)
    return PythonEnv(
        root, root / "bin" / "python", version, EnvKind.VENV, has_pip, tuple(site), Platform.LINUX
    )


def install_standins(env: PythonEnv, specs: Iterable[StandIn]) -> None:
    """Install stand-in wheels into `env` with real uv (no index, no dependencies)."""
    with tempfile.TemporaryDirectory(prefix="td-wheels-") as tmp:
        wheels = [str(build_wheel(spec, Path(tmp))) for spec in specs]
        subprocess.run(
            [
                uv_bin(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(env.python),
                "--no-index",
                "--no-deps",
                *wheels,
            ],
            check=True,
            env=installer_environ(),
            timeout=120,
            capture_output=True,
        )


def site_packages_env(root: Path, platform: Platform = Platform.LINUX) -> PythonEnv:
    """A hand-built layout (no interpreter): for files no installer would write, e.g. half installs."""
    sp = root / ("Lib/site-packages" if platform is Platform.WINDOWS else "lib/python3.12/site-packages")
    sp.mkdir(parents=True, exist_ok=True)
    python = root / ("Scripts/python.exe" if platform is Platform.WINDOWS else "bin/python")
    return PythonEnv(root, python, "3.12.4", EnvKind.VENV, False, (sp,), platform)


def unpack_standin(env: PythonEnv, spec: StandIn, *, installer: str = "pip") -> None:
    """Unpack a stand-in wheel into a hand-built site-packages as an installer would."""
    import zipfile

    with tempfile.TemporaryDirectory(prefix="td-wheel-") as tmp:
        wheel = build_wheel(spec, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(env.site_packages[0])
    (env.site_packages[0] / spec.dist_info / "INSTALLER").write_text(installer + "\n")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (bar caches and torchdoctor's own rollback folder) -> its sha256.

    Comparing two digests proves an environment was put back exactly, byte for byte.
    """
    import hashlib

    digest: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.startswith(".torchdoctor") or not path.is_file():
            continue
        digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
