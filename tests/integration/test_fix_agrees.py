"""`fix` and `check` give one verdict: what fix calls verified, check calls ok.

Real venvs (and a real non-venv Python install), stand-in wheels, the local index and the real CLI:
  - a stale second `torch-*.dist-info` (check: torch-unreadable) is cleaned by the reinstall, and
    put back by the restore when the fix fails;
  - after installing, fix runs check's rules with the plan's hardware and knowledge, and a warning
    or error fails it (restored exactly), an info does not;
  - an externally managed Python (PEP 668) is refused unless --break-system-packages is given,
    which then reaches pip and uv.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import install_standins, make_venv, tree_digest
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import family
from tests.support.standin import StandIn, build_wheel, torch_version_py
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.envs.discover import environment_from_path
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.fix import check_problem, externally_managed_error
from torchdoctor.service.install.installers import InstallFailedError, PipBackend, UvBackend
from torchdoctor.service.models import EnvKind, EnvReport, Finding, FindingCode, PythonEnv

pytestmark = pytest.mark.slow

RTX_4090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
}
KN = load_knowledge(Path("/nonexistent"))
MARKER_TEXT = (
    "[externally-managed]\n"
    "Error=To install Python packages system-wide, try apt install\n"
    " python3-xyz, where xyz is the package you are trying to\n"
    " install.\n"
)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    for variant in ("cpu", "cu126", "cu128"):
        publish(root, family(variant), variant)
    with IndexServer(root) as server:
        yield server


def td(tmp_path: Path, *argv: str, hardware: dict[str, Any] = RTX_4090) -> subprocess.CompletedProcess[str]:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(hardware))
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *argv, "--hardware", str(hw)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=dict(os.environ, NO_COLOR="1"),
    )


def fix(
    tmp_path: Path, env: PythonEnv, base: str, *extra: str, hardware: dict[str, Any] = RTX_4090
) -> subprocess.CompletedProcess[str]:
    return td(
        tmp_path, "fix", "--env", str(env.root), "--index-base", base, "--yes", "--no-bench", *extra,
        hardware=hardware,
    )  # fmt: skip


def check_json(tmp_path: Path, env: PythonEnv, hardware: dict[str, Any] = RTX_4090) -> dict[str, Any]:
    proc = td(tmp_path, "check", "--json", "--no-discover", "--env", str(env.root), hardware=hardware)
    report: dict[str, Any] = json.loads(proc.stdout)["environments"][0]
    return report


def drop_dist_info(env: PythonEnv, spec: StandIn) -> Path:
    """Copy another version's dist-info folder (only) into site-packages: a stale record."""
    wheel = build_wheel(spec, env.root.parent / "stale-wheel")
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(spec.dist_info + "/"):
                zf.extract(name, env.site_packages[0])
    return env.site_packages[0] / spec.dist_info


def torch_records(env: PythonEnv) -> list[str]:
    return sorted(p.name for p in env.site_packages[0].glob("torch-*.dist-info"))


# --- a stale second torch-*.dist-info ------------------------------------------------------------------


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_stale_record_beside_the_old_build_is_gone_after_the_fix(
    tmp_path: Path, index: IndexServer, installer: str
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    drop_dist_info(env, StandIn("torch", "2.5.1"))
    before = check_json(tmp_path, env)
    assert before["status"] == "broken"
    assert [f["code"] for f in before["findings"]] == ["torch-unreadable"]

    proc = fix(tmp_path, env, index.url, "--installer", installer)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert torch_records(env) == ["torch-2.7.1+cu128.dist-info"]
    after = check_json(tmp_path, env)
    assert (after["status"], after["findings"]) == ("ok", []), after


def test_the_fitting_build_with_a_stale_record_is_reinstalled_not_called_nothing_to_do(
    tmp_path: Path, index: IndexServer
) -> None:
    """The plan keeps the same versions, but check says torch-unreadable: fix must not say
    "Nothing to do" and leave it broken."""
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    drop_dist_info(env, StandIn("torch", "2.5.1"))
    assert check_json(tmp_path, env)["status"] == "broken"

    proc = fix(tmp_path, env, index.url, "--installer", "pip")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Nothing to do" not in proc.stdout
    assert "Removed the stale record torch-2.5.1.dist-info" in proc.stderr
    assert torch_records(env) == ["torch-2.7.1+cu128.dist-info"]
    assert check_json(tmp_path, env)["status"] == "ok"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_failed_fix_puts_the_stale_record_back_too(tmp_path: Path, installer: str) -> None:
    root = tmp_path / "index"
    publish(root, family("cu128", import_error="DLL load failed while importing _C"), "cu128")
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    stale = drop_dist_info(env, StandIn("torch", "2.5.1"))
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url, "--installer", installer)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed verification" in proc.stderr and "restored exactly" in proc.stderr
    assert (stale / "METADATA").is_file()
    assert tree_digest(env.root) == before


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_stale_record_left_behind_makes_the_fix_fail_not_succeed(tmp_path: Path, installer: str) -> None:
    """A second record that claims the planned version itself (`torch-2.7.1.dist-info` saying
    2.7.1+cu128, as a mix of pip and uv spellings leaves) is no "other version", so it survives
    the stale-record cleanup: two torch installations appear, check says torch-unreadable, and
    fix must report that and restore, not call the environment verified."""
    root = tmp_path / "index"
    for variant in ("cpu", "cu128"):
        publish(root, family(variant), variant)
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    twin = drop_dist_info(env, StandIn("torch", "2.7.1+cu128"))
    left_behind = twin.with_name("torch-2.7.1.dist-info")
    twin.rename(left_behind)
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url, "--installer", installer)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "`check` still finds a problem after installing (torch-unreadable)" in proc.stderr
    assert "several torch installations" in proc.stderr and "torch-2.7.1.dist-info" in proc.stderr
    assert "verified" not in proc.stdout
    assert "restored exactly" in proc.stderr
    assert tree_digest(env.root) == before
    assert check_json(tmp_path, env)["status"] == "broken"


# --- check's rules after installing --------------------------------------------------------------------


def test_a_build_check_calls_broken_fails_the_fix_with_the_finding_and_is_restored(tmp_path: Path) -> None:
    """A wheel whose files disagree with its own metadata imports and verifies (its __init__ says
    2.7.1+cu128), but check reads torch/version.py (2.7.0+cu128): torch-unreadable."""
    root = tmp_path / "index"
    mixed = {
        "torch/__init__.py": "__version__ = '2.7.1+cu128'\nfrom torch import version\n",
        "torch/version.py": torch_version_py("2.7.0+cu128", "12.8", None, None),
    }
    publish(root, family("cu128", files=mixed), "cu128")
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    before = tree_digest(env.root)
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "`check` still finds a problem after installing (torch-unreadable)" in proc.stderr
    assert "does not match torch/version.py (2.7.0+cu128)" in proc.stderr
    assert "restored exactly" in proc.stderr and "verified" not in proc.stdout
    assert tree_digest(env.root) == before


def test_a_build_the_plan_chose_for_minor_compat_passes_and_check_agrees(tmp_path: Path) -> None:
    """Only cu128 is published and the driver is CUDA 12.6's: the plan says "runs through CUDA
    minor-version compatibility", and check's driver-minor-compat warning is what it announced."""
    hardware = {**RTX_4090, "driver_version": "560.35.05"}
    root = tmp_path / "index"
    for variant in ("cpu", "cu128"):
        publish(root, family(variant), variant)
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cpu"))
    with IndexServer(root) as server:
        proc = fix(tmp_path, env, server.url, hardware=hardware)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "minor-version compatibility" in proc.stdout
    after = check_json(tmp_path, env, hardware)
    assert [f["code"] for f in after["findings"]] == ["driver-minor-compat"]


def _report(*codes: FindingCode) -> EnvReport:
    env = PythonEnv(Path("/e"), Path("/e/bin/python"), "3.12.4", EnvKind.VENV, False)
    return EnvReport(env, None, tuple(Finding(c, f"{c} happened", "do x") for c in codes))


def test_only_warnings_and_errors_count_errors_first() -> None:
    assert check_problem(_report(FindingCode.NEWER_VARIANT_AVAILABLE)) is None
    warn = check_problem(_report(FindingCode.NEWER_VARIANT_AVAILABLE, FindingCode.DRIVER_MINOR_COMPAT))
    assert warn is not None and warn.code is FindingCode.DRIVER_MINOR_COMPAT
    both = _report(FindingCode.DRIVER_MINOR_COMPAT, FindingCode.GPU_ARCH_UNSUPPORTED)
    error = check_problem(both)
    assert error is not None and error.code is FindingCode.GPU_ARCH_UNSUPPORTED
    assert check_problem(_report(FindingCode.DRIVER_MINOR_COMPAT), {FindingCode.DRIVER_MINOR_COMPAT}) is None


# --- externally managed Pythons (PEP 668) ---------------------------------------------------------------


def system_python(root: Path) -> PythonEnv:
    """A real Python install that is not a venv: this interpreter's binary copied to `root/bin`,
    its standard library linked in file by file, and an empty site-packages of its own, so
    `sys.prefix == sys.base_prefix == root` and installing touches only `root`."""
    base = Path(sys.base_prefix)
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    real = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    stdlib = Path(sysconfig.get_paths(vars={"base": str(base), "installed_base": str(base)})["stdlib"])
    lib = root / "lib" / f"python{minor}"
    (lib / "site-packages").mkdir(parents=True)
    (root / "bin").mkdir()
    shutil.copy2(real, root / "bin" / f"python{minor}")
    (root / "bin" / "python3").symlink_to(f"python{minor}")
    for entry in stdlib.iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    probe = subprocess.run(
        [str(root / "bin" / "python3"), "-I", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0 or Path(probe.stdout.strip()) != root:
        pytest.skip(f"this interpreter cannot be copied into a prefix of its own: {probe.stderr.strip()}")
    env = environment_from_path(root)
    assert env.kind is EnvKind.SYSTEM and env.site_packages == (lib / "site-packages",)
    return env


@pytest.fixture
def managed(tmp_path: Path) -> PythonEnv:
    env = system_python(tmp_path / "sysroot")
    install_standins(env, family("cpu"))  # uv's --no-index install, before the marker exists
    (env.site_packages[0].parent / "EXTERNALLY-MANAGED").write_text(MARKER_TEXT)
    return env


def test_an_externally_managed_python_is_refused_before_anything(
    tmp_path: Path, managed: PythonEnv, index: IndexServer
) -> None:
    before = tree_digest(managed.root)
    proc = fix(tmp_path, managed, index.url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "externally managed Python (PEP 668" in line
    assert "To install Python packages system-wide, try apt install." in line  # Error='s first line
    assert "--break-system-packages" in line
    assert "[1]" not in proc.stderr  # nothing was downloaded
    assert tree_digest(managed.root) == before


def test_dry_run_names_the_flag_and_passes_it_on(
    tmp_path: Path, managed: PythonEnv, index: IndexServer
) -> None:
    plain = td(tmp_path, "fix", "--env", str(managed.root), "--index-base", index.url, "--dry-run")
    assert plain.returncode == 0, plain.stderr
    assert "externally managed" in plain.stdout and "--break-system-packages" in plain.stdout
    runs = [ln for ln in plain.stdout.splitlines() if "would run:" in ln]
    assert runs and not any("--break-system-packages" in ln for ln in runs)
    for installer in ("uv", "pip"):
        given = td(
            tmp_path, "fix", "--env", str(managed.root), "--index-base", index.url, "--dry-run",
            "--installer", installer, "--break-system-packages",
        )  # fmt: skip
        runs = [ln for ln in given.stdout.splitlines() if "would run:" in ln]
        assert runs and all("--break-system-packages" in ln for ln in runs), given.stdout


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_with_break_system_packages_the_installer_is_allowed_in(
    tmp_path: Path, managed: PythonEnv, index: IndexServer, installer: str
) -> None:
    proc = fix(tmp_path, managed, index.url, "--installer", installer, "--break-system-packages")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reading = read_build(managed, KN)
    assert reading is not None and reading.build.version == "2.7.1+cu128"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_control_the_installer_itself_refuses_without_the_flag(
    tmp_path: Path, managed: PythonEnv, installer: str
) -> None:
    """Without torchdoctor's refusal, pip and uv would refuse on their own: the flag is needed."""
    wheel = build_wheel(StandIn("torch", "2.7.1+cu128", cuda="12.8"), tmp_path / "w")
    backend = UvBackend(str(Path(sys.executable).with_name("uv"))) if installer == "uv" else PipBackend()
    with pytest.raises(InstallFailedError, match=r"(?i)externally.managed"):
        backend.install(managed, [wheel], index_url=None, log=io.StringIO(), timeout=120, progress=None)


def test_the_first_line_of_error_is_quoted_and_a_bare_marker_has_none(tmp_path: Path) -> None:
    marker = tmp_path / "EXTERNALLY-MANAGED"
    marker.write_text(MARKER_TEXT)
    assert externally_managed_error(marker) == "To install Python packages system-wide, try apt install"
    marker.write_text("")
    assert externally_managed_error(marker) is None
