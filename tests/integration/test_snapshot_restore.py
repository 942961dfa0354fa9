"""Snapshot and exact restore of the torch family in real venvs, proven by a digest of the files.

The environments are real (uv venvs, stand-in wheels installed by real uv and pip); the "killed
fix" is a real child process that takes a snapshot, starts replacing torch the way pip does
(stash `torch/` as `~orch/`, write a new `torch/`) and is SIGKILLed half-way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.standin import StandIn, build_wheel
from torchdoctor.service import proc
from torchdoctor.service.errors import EXIT_NOT_RESTORED
from torchdoctor.service.install import snapshot
from torchdoctor.service.install.installers import PipBackend, UvBackend
from torchdoctor.service.install.snapshot import (
    RestoreFailedError,
    SnapshotState,
    discard_snapshot,
    pending_snapshots,
    recover_interrupted,
    restore_snapshot,
    take_snapshot,
)
from torchdoctor.service.install.verify import verify_build
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OLD_DI = "torch-2.7.1+cu128.dist-info"
TORCH_OLD = StandIn(
    "torch",
    "2.7.1+cu128",
    cuda="12.8",
    files={
        "functorch/__init__.py": "VERSION = 'old'\n",
        f"{OLD_DI}/entry_points.txt": "[console_scripts]\ntorchrun = torch.version:main\n",
        "torch-2.7.1+cu128.data/scripts/torch-hello": "#!python\nprint('hello')\n",
        "torch/lib/libtorch_stub.so": "not really a library\n" * 50,
    },
)
TORCH_NEW = StandIn(
    "torch",
    "2.8.0+cu128",
    cuda="12.8",
    files={
        "torch/new_module.py": "NEW = True\n",
        "torchgen/__init__.py": "",
        "torch-2.8.0+cu128.dist-info/entry_points.txt": (
            "[console_scripts]\ntorchrun = torch.version:main\ntorchfrtrace = torch.version:main\n"
        ),
    },
)
VISION = StandIn("torchvision", "0.22.1+cu128")
VISION_NEW = StandIn("torchvision", "0.23.0+cu128")
UNRELATED = StandIn("tdunrelated", "1.0")
# Packages of the venv itself: running pip writes its own __pycache__, which is not our business.
NOT_OURS = (
    "pip",
    "_virtualenv",
    "setuptools",
    "wheel",
    "_distutils_hack",
    "distutils-precedence",
    "pkg_resources",
)


def digest(env: PythonEnv) -> dict[str, str]:
    """Every file and folder of the environment (bytes, link targets), minus our rollback folder."""
    root = env.root
    result: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not (here == root and d == ".torchdoctor")]
        names = list(files)
        if here in env.site_packages:
            dirs[:] = [d for d in dirs if not d.startswith(NOT_OURS)]
            names = [f for f in names if not f.startswith(NOT_OURS)]
        result[here.relative_to(root).as_posix() + "/"] = "dir"
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                result[rel] = "link:" + str(path.readlink())
            else:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def run_py(env: PythonEnv, code: str) -> str:
    # Bytecode on: a real user's interpreter writes __pycache__, which no RECORD lists.
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = proc.run([env.python, "-c", code], timeout=60, env=environ)
    assert done.ok, done.stderr
    return done.stdout.strip()


@pytest.fixture
def wheels(tmp_path: Path) -> Callable[[StandIn], Path]:
    def build(spec: StandIn) -> Path:
        return build_wheel(spec, tmp_path / "wheels")

    return build


@pytest.fixture
def env(tmp_path: Path) -> PythonEnv:
    """A uv venv without pip: old torch + torchvision + an unrelated package, torch imported once
    (so `__pycache__` files that no RECORD lists exist too)."""
    venv = make_venv(tmp_path / "venv")
    install_standins(venv, [TORCH_OLD, VISION, UNRELATED])
    run_py(venv, "import torch, torchvision, functorch")
    return venv


@pytest.fixture
def pip_env(tmp_path: Path) -> PythonEnv:
    venv = make_venv(tmp_path / "pipvenv", seed_pip=True)
    install_standins(venv, [TORCH_OLD, VISION, UNRELATED])
    run_py(venv, "import torch, torchvision")
    return venv


@pytest.fixture
def uv() -> UvBackend:
    return UvBackend(str(Path(sys.executable).with_name("uv")))


def sp(env: PythonEnv) -> Path:
    return env.site_packages[0]


def test_snapshot_links_every_family_file_and_writes_a_pending_manifest(env: PythonEnv) -> None:
    snap = take_snapshot(env)
    paths = {f.path for f in snap.files}
    site = sp(env).relative_to(env.root).as_posix()
    assert f"{site}/torch/version.py" in paths
    assert f"{site}/{OLD_DI}/RECORD" in paths
    assert "bin/torchrun" in paths and "bin/torch-hello" in paths  # `../../../bin/...` RECORD entries
    assert any("/torch/__pycache__/" in p for p in paths)  # not in any RECORD
    assert f"{site}/functorch/__init__.py" in paths
    assert not any("tdunrelated" in p for p in paths)
    assert snap.versions == {"torch": "2.7.1+cu128", "torchvision": "0.22.1+cu128"}
    assert snap.linked == len(snap.files)  # same filesystem: nothing copied
    assert snap.folder.parent == env.root / ".torchdoctor" / "rollback"
    stored = snap.folder / "files" / next(f.stored for f in snap.files if f.path.endswith("torch/version.py"))
    assert stored.samefile(sp(env) / "torch" / "version.py")
    loaded = snapshot.load_snapshot(snap.folder)
    assert loaded.state is SnapshotState.PENDING and loaded.pid == os.getpid()
    assert loaded.files == snap.files
    assert pending_snapshots(env) == []  # its process (this one) is alive


def test_restore_after_a_real_install_is_exact(
    env: PythonEnv, uv: UvBackend, wheels: Callable[[StandIn], Path]
) -> None:
    before = digest(env)
    new = [wheels(TORCH_NEW), wheels(VISION_NEW)]
    snap = take_snapshot(env, incoming=new)
    uv.install(env, new, index_url=None, log=io.StringIO(), timeout=120, progress=None)
    assert run_py(env, "import torch; print(torch.__version__)") == "2.8.0+cu128"
    assert (sp(env) / "torchgen").is_dir() and (env.root / "bin" / "torchfrtrace").exists()
    assert changed(before, digest(env))

    restore_snapshot(snap)

    assert changed(before, digest(env)) == []
    assert run_py(env, "import torch, torchvision; print(torch.__version__, torchvision.__version__)") == (
        "2.7.1+cu128 0.22.1+cu128"
    )
    assert not (env.root / ".torchdoctor").exists()


def test_restore_after_partial_changes(env: PythonEnv) -> None:
    before = digest(env)
    snap = take_snapshot(env)
    torch_dir = sp(env) / "torch"
    (torch_dir / "version.py").unlink()
    (torch_dir / "__init__.py").unlink()  # installers unlink before writing (never in place)
    (torch_dir / "__init__.py").write_text("broken = True\n")
    (torch_dir / "stray_new.py").write_text("x = 1\n")
    (torch_dir / "newdir" / "deep").mkdir(parents=True)
    (torch_dir / "newdir" / "deep" / "f.py").write_text("")
    shutil.rmtree(sp(env) / "functorch")
    (sp(env) / OLD_DI / "RECORD").unlink()  # a half-removed dist-info
    (sp(env) / "torch-2.8.0+cu128.dist-info").mkdir()
    (sp(env) / "torch-2.8.0+cu128.dist-info" / "METADATA").write_text("Name: torch\nVersion: 2.8.0+cu128\n")
    (env.root / "bin" / "torchrun").unlink()
    assert len(changed(before, digest(env))) > 5

    restore_snapshot(snap)

    assert changed(before, digest(env)) == []


def test_restore_without_changes_keeps_files_in_place(env: PythonEnv) -> None:
    before = digest(env)
    inode = (sp(env) / "torch" / "version.py").stat().st_ino
    snap = take_snapshot(env)
    restore_snapshot(snap, discard=False)
    assert changed(before, digest(env)) == []
    assert (sp(env) / "torch" / "version.py").stat().st_ino == inode
    assert snapshot.load_snapshot(snap.folder).state is SnapshotState.RESTORED
    assert pending_snapshots(env) == []
    discard_snapshot(snap)
    assert not (env.root / ".torchdoctor").exists()


def test_restore_clears_what_a_killed_installer_wrote_before_its_record(
    env: PythonEnv, wheels: Callable[[StandIn], Path]
) -> None:
    before = digest(env)
    new = wheels(TORCH_NEW)
    snap = take_snapshot(env, incoming=[new])
    assert "bin/torchfrtrace" in snap.incoming_files
    # What an installer killed early leaves: the old files gone, some new ones written, no
    # dist-info yet, a script.
    shutil.rmtree(sp(env) / "torch")
    with zipfile.ZipFile(new) as zf:
        for name in zf.namelist():
            if ".dist-info/" not in name:
                zf.extract(name, sp(env))
    (env.root / "bin" / "torchfrtrace").write_text("#!/bin/sh\n")
    assert (sp(env) / "torchgen" / "__init__.py").exists()

    restore_snapshot(snap)

    assert changed(before, digest(env)) == []


def test_files_an_installer_may_overwrite_in_place_are_copied_not_linked(
    env: PythonEnv, wheels: Callable[[StandIn], Path]
) -> None:
    # A half-installed torch: its files are there but its dist-info is gone, so no installer
    # uninstalls them first, and one that extracts over them rewrites the same inode.
    shutil.rmtree(sp(env) / OLD_DI)
    before = digest(env)
    new = wheels(TORCH_NEW)
    snap = take_snapshot(env, incoming=[new])
    version_py = next(f for f in snap.files if f.path.endswith("torch/version.py"))
    assert version_py.sha256 is not None  # copied
    assert 0 < snap.linked < len(snap.files)  # torchvision's files are still linked
    with zipfile.ZipFile(new) as zf:
        zf.extractall(sp(env))  # truncates torch/version.py and writes the new text into it

    restore_snapshot(snap)

    assert changed(before, digest(env)) == []


def test_record_entries_outside_the_environment_are_never_touched(env: PythonEnv, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not torchdoctor's to delete\n")
    before = digest(env)
    snap = take_snapshot(env)
    # A new RECORD (as an install would write) that lists a file outside the environment.
    record = sp(env) / OLD_DI / "RECORD"
    text = record.read_text() + f"{os.path.relpath(outside, sp(env))},,\n"
    record.unlink()
    record.write_text(text)

    restore_snapshot(snap)

    assert outside.read_text() == "not torchdoctor's to delete\n"
    assert changed(before, digest(env)) == []


def test_a_new_build_failing_to_import_is_restored_exactly(
    pip_env: PythonEnv, wheels: Callable[[StandIn], Path]
) -> None:
    before = digest(pip_env)
    broken = wheels(
        StandIn("torch", "2.8.0+cu128", cuda="12.8", import_error="libcudnn.so.9: cannot open shared object")
    )
    snap = take_snapshot(pip_env, incoming=[broken])
    PipBackend().install(pip_env, [broken], index_url=None, log=io.StringIO(), timeout=180, progress=None)

    result = verify_build(pip_env, expected_version="2.8.0+cu128", expected_cuda="12.8", check_gpus=False)
    assert not result.ok
    (problem,) = result.problems
    assert problem.startswith("import torch failed: ImportError: libcudnn.so.9: cannot open shared object")

    restore_snapshot(snap)

    assert changed(before, digest(pip_env)) == []
    again = verify_build(pip_env, expected_version="2.7.1+cu128", expected_cuda="12.8", check_gpus=False)
    assert again.ok, again.problems


def test_strays_from_an_earlier_interrupted_pip_are_kept_by_restore_and_cleared_by_discard(
    env: PythonEnv, uv: UvBackend, wheels: Callable[[StandIn], Path]
) -> None:
    # What a pip killed during an earlier uninstall leaves behind.
    shutil.copytree(sp(env) / "torch", sp(env) / "~orch")
    shutil.copytree(sp(env) / OLD_DI, sp(env) / "~orch-2.6.0.dist-info")
    (sp(env) / "~orchestra").mkdir()  # not pip's: a user's folder that merely looks similar
    before = digest(env)
    new = [wheels(TORCH_NEW)]

    snap = take_snapshot(env, incoming=new)
    site = sp(env).relative_to(env.root).as_posix()
    assert snap.strays == (f"{site}/~orch", f"{site}/~orch-2.6.0.dist-info")
    uv.install(env, new, index_url=None, log=io.StringIO(), timeout=120, progress=None)
    restore_snapshot(snap)
    assert changed(before, digest(env)) == []

    snap = take_snapshot(env, incoming=new)
    uv.install(env, new, index_url=None, log=io.StringIO(), timeout=120, progress=None)
    discard_snapshot(snap)  # the fix succeeded
    assert not (sp(env) / "~orch").exists() and not (sp(env) / "~orch-2.6.0.dist-info").exists()
    assert (sp(env) / "~orchestra").is_dir()
    assert run_py(env, "import torch; print(torch.__version__)") == "2.8.0+cu128"
    assert not (env.root / ".torchdoctor").exists()


def test_copy_fallback_when_links_are_refused(
    env: PythonEnv, uv: UvBackend, wheels: Callable[[StandIn], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_args: object, **_kw: object) -> None:
        raise OSError(18, "Invalid cross-device link")  # what a FAT drive or another volume answers

    before = digest(env)
    monkeypatch.setattr(os, "link", no_links)
    snap = take_snapshot(env)
    assert snap.linked == 0 and all(f.sha256 for f in snap.files)
    stored = snap.folder / "files" / snap.files[0].stored
    assert not stored.samefile(env.root / snap.files[0].path)
    new = [wheels(TORCH_NEW)]
    uv.install(env, new, index_url=None, log=io.StringIO(), timeout=120, progress=None)
    restore_snapshot(snap)
    assert changed(before, digest(env)) == []


def test_a_damaged_snapshot_refuses_before_touching_anything(
    env: PythonEnv, uv: UvBackend, wheels: Callable[[StandIn], Path]
) -> None:
    snap = take_snapshot(env)
    uv.install(env, [wheels(TORCH_NEW)], index_url=None, log=io.StringIO(), timeout=120, progress=None)
    after_install = digest(env)
    victim = next(f for f in snap.files if f.path.endswith("torch/version.py"))
    (snap.folder / "files" / victim.stored).unlink()

    with pytest.raises(RestoreFailedError) as info:
        restore_snapshot(snap)

    assert info.value.exit_code == EXIT_NOT_RESTORED
    assert "damaged" in str(info.value) and "torch/version.py" in str(info.value)
    assert changed(after_install, digest(env)) == []
    assert snap.folder.is_dir()  # kept for a person to look at


CHILD = """
import os, sys, time
from pathlib import Path
from tests.support.envs import venv_env
from torchdoctor.service.install.snapshot import take_snapshot

env = venv_env(Path(sys.argv[1]))
snap = take_snapshot(env)
print("snapshot", snap.folder, flush=True)
sp = env.site_packages[0]
# What pip's uninstall does first: stash the folders under `~` names, then write the new ones.
(sp / "torch").rename(sp / "~orch")
(sp / "torch-2.7.1+cu128.dist-info").rename(sp / "~orch-2.7.1+cu128.dist-info")
(sp / "torch").mkdir()
i = 0
while True:
    (sp / "torch" / ("part%d.py" % i)).write_text("x = %d\\n" % i)
    print("wrote", i, flush=True)
    i += 1
    time.sleep(0.02)
"""


@pytest.fixture
def killed_fix(env: PythonEnv) -> Iterator[tuple[PythonEnv, dict[str, str], int]]:
    before = digest(env)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(env.root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("wrote 10"):
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    yield env, before, child.pid


def test_a_killed_fix_is_found_and_recovered(killed_fix: tuple[PythonEnv, dict[str, str], int]) -> None:
    env, before, pid = killed_fix
    assert (sp(env) / "~orch").is_dir() and (sp(env) / "torch" / "part10.py").exists()
    (pending,) = pending_snapshots(env)
    assert pending.pid == pid and pending.state is SnapshotState.PENDING

    recovered = recover_interrupted(env)

    assert recovered is not None and recovered.id == pending.id
    assert changed(before, digest(env)) == []
    assert run_py(env, "import torch; print(torch.__version__)") == "2.7.1+cu128"
    assert pending_snapshots(env) == []
    assert recover_interrupted(env) is None
    assert not (env.root / ".torchdoctor").exists()


def test_a_half_made_snapshot_of_a_dead_run_is_removed(env: PythonEnv) -> None:
    before = digest(env)
    half = env.root / ".torchdoctor" / "rollback" / "20260101T000000-999999999-abcdef" / "files"
    half.mkdir(parents=True)
    assert recover_interrupted(env) is None
    assert not (env.root / ".torchdoctor").exists()
    assert changed(before, digest(env)) == []


REAL_TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


@pytest.mark.torch
@pytest.mark.skipif(
    not REAL_TORCH_WHEEL.is_file() or sys.version_info[:2] != (3, 11),
    reason="needs the local CPU torch wheel",
)
def test_real_cpu_torch_survives_a_failed_fix_byte_for_byte(
    tmp_path: Path, wheels: Callable[[StandIn], Path], uv: UvBackend
) -> None:
    """12k files, 670 MiB: replaced by pip (through --python: the venv has no pip), restored exactly."""
    from tests.support import realtorch

    env = make_venv(tmp_path / "real")
    setup: list[str | Path] = [
        uv.uv_path,
        "pip",
        "install",
        "--python",
        env.python,
        "--no-index",
        "--no-deps",
        REAL_TORCH_WHEEL,
    ]
    done = proc.run(setup, timeout=600, env={**os.environ, "UV_NO_CONFIG": "1"})
    assert done.ok, done.stderr
    # torch's own dependencies (sympy, typing-extensions, ...) from the suite's cached torch venv.
    deps = realtorch.site_packages(realtorch.ensure_real_torch())
    (sp(env) / "td_deps.pth").write_text(f"{deps}\n")
    ok = verify_build(env, expected_version="2.13.0+cpu", expected_cuda=None, check_gpus=False)
    assert ok.ok, ok.problems
    before = digest(env)
    broken = wheels(StandIn("torch", "2.14.0+cpu", import_error="undefined symbol: _ZN3c10"))

    snap = take_snapshot(env, incoming=[broken])
    assert snap.linked == len(snap.files) > 10_000
    PipBackend().install(env, [broken], index_url=None, log=io.StringIO(), timeout=600, progress=None)
    assert not verify_build(env, expected_version="2.14.0+cpu", expected_cuda=None, check_gpus=False).ok
    restore_snapshot(snap)

    assert changed(before, digest(env)) == []
    again = verify_build(env, expected_version="2.13.0+cpu", expected_cuda=None, check_gpus=False)
    assert again.ok, again.problems


def test_a_manifest_naming_paths_outside_the_environment_is_not_trusted(
    env: PythonEnv, tmp_path: Path
) -> None:
    snap = take_snapshot(env)
    data = json.loads(snap.manifest_path.read_text())
    data["files"][0]["path"] = str(tmp_path / "elsewhere.txt")
    snap.manifest_path.write_text(json.dumps(data))
    with pytest.raises(snapshot.SnapshotError, match="outside the environment"):
        snapshot.load_snapshot(snap.folder)
