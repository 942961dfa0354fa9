"""Restores that lose nothing, each case one of the failures seen in the adversarial `fix` trials.

Real venvs, real uv and pip, stand-in wheels from the real local index, the real CLI where a whole
fix is meant; every case compares a full digest (path, kind, size, mode, owner, sha256) before and
after. Tests run as root here, so owners are proven with a made-up uid.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import hw
from tests.support.envs import install_standins, make_venv
from tests.support.fulldigest import differences, full_digest
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn, build_wheel
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install import fileops
from torchdoctor.service.install.fix import FixOptions, apply_plan, fix_session
from torchdoctor.service.install.index import IndexClient
from torchdoctor.service.install.installers import Backend, PipBackend, UvBackend
from torchdoctor.service.install.plan import inspect_target, make_plan
from torchdoctor.service.install.snapshot import (
    RestoreFailedError,
    SnapshotError,
    load_snapshot,
    recover,
    restore_snapshot,
    take_snapshot,
)
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

HW = {"driver_version": "572.16", "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]}
OLD = [StandIn("torch", "2.7.1+cpu"), StandIn("torchvision", "0.22.1+cpu")]
UID, GID = 12345, 12346
DATA_TORCH = StandIn(
    "torch",
    "2.8.0+cpu",
    files={
        "torch-2.8.0+cpu.data/purelib/tdpure.py": "PURE = 1\n",
        "torch-2.8.0+cpu.data/platlib/tdplat/__init__.py": "PLAT = 1\n",
        "torch-2.8.0+cpu.data/scripts/td-tool": "#!python\nprint('tool')\n",
        "torch-2.8.0+cpu.data/data/share/td/shared.txt": "torch's version of a shared data file\n",
        "torch-2.8.0+cpu.data/data/share/td/torch-only.txt": "new data\n",
        "torch-2.8.0+cpu.data/headers/td.h": "#define TD 1\n",
    },
)
OTHER = StandIn(  # another project that owns the data file the new torch also writes
    "tdother", "1.0", files={"tdother-1.0.data/data/share/td/shared.txt": "tdother's file\n"}
)


def uv() -> UvBackend:
    return UvBackend(str(Path(sys.executable).with_name("uv")))


def sp(env: PythonEnv) -> Path:
    return env.site_packages[0]


def fix(
    tmp_path: Path, env: PythonEnv, base: str, *extra: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(HW))
    argv = [
        sys.executable, "-m", "torchdoctor.agent", "fix", "--env", str(env.root),
        "--hardware", str(hw), "--index-base", base, "--yes", "--no-bench", *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_COLOR": "1", **(environ or {})},
    )


def check_json(env: PythonEnv, tmp_path: Path) -> dict[str, object]:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(HW))
    done = subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "check", "--json", "--no-discover", "--env", str(env.root),
         "--hardware", str(hw)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def pending_folders(env: PythonEnv, td_dirs: dict[str, Path]) -> list[Path]:
    bases = [env.root / ".torchdoctor" / "rollback", td_dirs["state"] / "rollback"]
    # A snapshot's folder is its id; `<id>.damaged` is one set aside for a person, not pending.
    return [
        p for base in bases if base.is_dir() for p in base.rglob("manifest.json") if "." not in p.parent.name
    ]


# --- item 1: what the installer upgrades comes back ----------------------------------------


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_dependency_a_new_dependency_upgrades_comes_back_as_it_was(tmp_path: Path, installer: str) -> None:
    """Installed: torch 2.7.1+cpu and tdhelper 1.0, which nothing installed requires. The new torch
    requires tdnew (not installed), which requires tdhelper>=2: only a resolve sees that tdhelper
    will change. The new torch then fails to import: tdhelper must come back as 1.0, byte for byte."""
    root = tmp_path / "index"
    publish(
        root,
        [
            StandIn("tdhelper", "1.0"),
            StandIn("tdhelper", "2.0"),
            StandIn("tdnew", "1.0", requires=["tdhelper>=2"]),
        ],
        "cu128",
    )
    broken = StandIn("torch", "2.7.1+cu128", cuda="12.8", requires=["tdnew"], import_error="boom")
    publish(root, [broken, StandIn("torchvision", "0.22.1+cu128")], "cu128")
    env = make_venv(tmp_path / "venv")
    install_standins(env, [*OLD, StandIn("tdhelper", "1.0")])
    before = full_digest(env.root)
    with IndexServer(root) as server:
        done = fix(tmp_path, env, server.url, "--installer", installer)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "restored exactly" in done.stderr
    assert differences(before, full_digest(env.root)) == []
    assert (sp(env) / "tdhelper-1.0.dist-info").is_dir()


# --- item 2: files installed through <name>.data/ ------------------------------------------


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_data_scheme_files_are_saved_and_restored_and_another_packages_file_survives(
    tmp_path: Path, installer: str
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, [*OLD, OTHER])
    shared = env.root / "share" / "td" / "shared.txt"
    assert shared.read_text() == "tdother's file\n"
    before = full_digest(env.root)
    wheel = build_wheel(DATA_TORCH, tmp_path / "wheels")

    snap = take_snapshot(env, incoming=[wheel])
    backend = uv() if installer == "uv" else PipBackend()
    backend.install(env, [wheel], index_url=None, log=io.StringIO(), timeout=180, progress=None)
    written = [sp(env) / "tdpure.py", sp(env) / "tdplat", env.root / "bin" / "td-tool"]
    assert all(p.exists() for p in written)
    assert shared.read_text() == "torch's version of a shared data file\n"
    assert list((env.root / "include").rglob("td.h"))

    restore_snapshot(snap)

    assert differences(before, full_digest(env.root)) == []
    assert shared.read_text() == "tdother's file\n"


def test_data_files_a_killed_installer_wrote_before_its_record_are_removed(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, [*OLD, OTHER])
    before = full_digest(env.root)
    wheel = build_wheel(DATA_TORCH, tmp_path / "wheels")
    snap = take_snapshot(env, incoming=[wheel])
    # What an installer killed before writing any RECORD leaves: each scheme's files in place.
    targets = {
        "purelib": sp(env),
        "platlib": sp(env),
        "scripts": env.root / "bin",
        "data": env.root,
        "headers": env.root
        / "include"
        / "site"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "torch",
    }
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if parts[0].endswith(".data"):
                dest = targets[parts[1]].joinpath(*parts[2:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    dest.unlink()
                dest.write_bytes(zf.read(name))

    restore_snapshot(snap)

    assert differences(before, full_digest(env.root)) == []


# --- item 3: a restore touches only what the snapshot knows ---------------------------------


def test_a_new_record_naming_the_interpreter_or_pyvenv_cfg_costs_nothing(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("not ours\n")
    (env.root / "bin" / "td-link-out").symlink_to(outside)  # a folder link leading out of the env
    before = full_digest(env.root)
    snap = take_snapshot(env)
    # The record a hostile wheel's install leaves: the interpreter, the venv marker, a path
    # through a link out of the environment; and one file the install really wrote.
    new_info = sp(env) / "torch-2.8.0.dist-info"
    new_info.mkdir()
    (new_info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.8.0\n")
    (env.root / "bin" / "td-new-tool").write_text("#!/bin/sh\n")
    (new_info / "RECORD").write_text(
        "../../../bin/python,,\n../../../bin/python3,,\n../../../pyvenv.cfg,,\n"
        "../../../bin/td-link-out/victim.txt,,\n../../../bin/td-new-tool,,\n"
        "torch-2.8.0.dist-info/RECORD,,\n"
    )

    restore_snapshot(snap)

    assert differences(before, full_digest(env.root)) == []
    assert (outside / "victim.txt").read_text() == "not ours\n"
    done = subprocess.run(
        [str(env.python), "-c", "print('alive')"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "alive"


def test_an_old_record_naming_the_interpreter_is_saved_and_put_back_unchanged(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    record = next(sp(env).glob("torch-*.dist-info")) / "RECORD"
    record.write_text(record.read_text() + "../../../bin/python,,\n../../../pyvenv.cfg,,\n")
    before = full_digest(env.root)
    snap = take_snapshot(env, incoming=[build_wheel(StandIn("torch", "2.8.0+cpu"), tmp_path / "w")])
    uv().install(env, [build_wheel(StandIn("torch", "2.8.0+cpu"), tmp_path / "w")], index_url=None,
                 log=io.StringIO(), timeout=120, progress=None)  # fmt: skip
    restore_snapshot(snap)
    assert differences(before, full_digest(env.root)) == []


# --- item 4: owners and modes, of folders too ------------------------------------------------


def give_to_user(env: PythonEnv) -> None:
    """The environment belongs to a (made-up) user, with a few unusual modes."""
    for folder, dirs, files in os.walk(env.root):
        for name in [*dirs, *files]:
            os.lchown(Path(folder) / name, UID, GID)
    os.lchown(env.root, UID, GID)
    (sp(env) / "torch" / "version.py").chmod(0o640)
    (sp(env) / "torch").chmod(0o750)


@pytest.mark.parametrize("links", [True, False], ids=["linked", "copied"])
def test_root_repairing_a_users_environment_leaves_it_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give files to another uid")
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    give_to_user(env)
    before = full_digest(env.root)
    if not links:

        def refuse(*_a: object, **_k: object) -> None:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", refuse)
    new = build_wheel(StandIn("torch", "2.8.0+cpu", files={"torch/deep/new.py": ""}), tmp_path / "w")
    snap = take_snapshot(env, incoming=[new])
    assert (snap.linked > 0) is links
    uv().install(env, [new], index_url=None, log=io.StringIO(), timeout=120, progress=None)
    shutil.rmtree(sp(env) / "torch")  # folders too: recreated by root, given back to the user

    restore_snapshot(snap)

    assert differences(before, full_digest(env.root)) == []


# --- item 5: discarding is atomic; damaged leftovers are set aside ---------------------------


def dead_snapshot(env: PythonEnv) -> Path:
    """A pending snapshot taken by a process that has exited (as a killed fix leaves it)."""
    script = (
        "import sys; from pathlib import Path\n"
        "from tests.support.envs import venv_env\n"
        "from torchdoctor.service.install.snapshot import take_snapshot\n"
        "print(take_snapshot(venv_env(Path(sys.argv[1]))).folder)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script, str(env.root)], cwd=repo, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return Path(done.stdout.strip())


def test_a_damaged_leftover_is_set_aside_once_not_exit_3_forever(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    folder = dead_snapshot(env)
    victim = next(f for f in load_snapshot(folder).files if f.path.endswith("torch/version.py"))
    (folder / "files" / victim.stored).unlink()  # what a kill inside an old, non-atomic discard left
    before = full_digest(env.root)

    first = recover(env)

    assert first.restored is None
    (aside,) = first.set_aside
    assert aside.folder.name == folder.name + ".damaged" and aside.folder.is_dir()
    assert "set aside in" in aside.message() and "delete that folder" in aside.message()
    assert differences(before, full_digest(env.root)) == []  # nothing in the environment touched
    assert recover(env).set_aside == ()  # the next run has nothing to trip on


def test_an_unreadable_manifest_is_set_aside(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    folder = dead_snapshot(env)
    (folder / "manifest.json").write_text("{ truncated")
    (aside,) = recover(env).set_aside
    assert aside.folder.name.endswith(".damaged")
    assert recover(env).set_aside == ()


def test_a_kill_inside_discard_leaves_trash_that_the_next_run_removes(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    folder = dead_snapshot(env)
    trash = folder.with_name(folder.name + ".discarded")
    folder.rename(trash)
    (trash / "manifest.json").unlink()  # half deleted
    before = full_digest(env.root)
    assert recover(env).restored is None
    assert not trash.exists() and not (env.root / ".torchdoctor").exists()
    assert differences(before, full_digest(env.root)) == []


# --- item 6: copies that still match; a read-only environment ---------------------------------


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths given here get `chattr -R +i` (and lose it again afterwards)."""
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=False, timeout=60, capture_output=True)


def make_immutable(path: Path, marked: list[Path]) -> None:
    """`chattr +i` on `path` and everything under it but links (which cannot carry the flag)."""
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr")
    entries = [
        path,
        *(Path(folder) / name for folder, dirs, files in os.walk(path) for name in [*dirs, *files]),
    ]
    targets = [str(e) for e in entries if not e.is_symlink()]
    done = subprocess.run(["chattr", "+i", *targets], check=False, timeout=60, capture_output=True, text=True)
    marked.append(path)
    if done.returncode != 0:
        pytest.skip(f"cannot set the immutable flag here: {done.stderr.strip()}")


def test_copies_that_still_match_need_no_write(tmp_path: Path, immutable: list[Path]) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    before = full_digest(env.root)
    make_immutable(sp(env) / "torch", immutable)  # links to immutable files are refused: copies
    snap = take_snapshot(env)
    assert snap.linked < len(snap.files)
    restore_snapshot(snap)  # nothing changed: every copy matches by size and hash, nothing written
    assert differences(before, full_digest(env.root)) == []


def test_a_read_only_environment_is_exit_2_with_no_pending_snapshot(
    tmp_path: Path, immutable: list[Path], td_dirs: dict[str, Path]
) -> None:
    root = tmp_path / "index"
    publish(
        root, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")], "cu128"
    )
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    before = full_digest(env.root)
    make_immutable(env.root, immutable)
    with IndexServer(root) as server:
        done = fix(tmp_path, env, server.url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot write here" in done.stderr and "Traceback" not in done.stderr
    assert pending_folders(env, td_dirs) == []
    assert differences(before, full_digest(env.root)) == []


# --- 12.5: an entry that cannot be read is reported, never dropped ------------------------------


def test_an_unreadable_record_fails_the_snapshot_before_anything_changes(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    record = next(sp(env).glob("torch-*.dist-info")) / "RECORD"
    record.unlink()
    record.mkdir()  # reading it fails with something other than "not there"
    before = full_digest(env.root)
    with pytest.raises(SnapshotError, match="cannot read 1 entries") as info:
        take_snapshot(env)
    assert "RECORD" in str(info.value)
    assert differences(before, full_digest(env.root)) == []


# --- 12.2: a file that stays locked goes to the trash; the restore still succeeds --------------


def test_a_new_file_that_stays_locked_is_moved_to_the_trash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    before = full_digest(env.root)
    snap = take_snapshot(env)
    dll = sp(env) / "torch" / "lib" / "new_cuda.dll"
    dll.parent.mkdir(parents=True)
    dll.write_bytes(b"loaded by a process we may not kill")
    real_unlink = os.unlink
    now = [0.0]

    def locked(path: str | Path, *a: object, **k: object) -> None:
        if Path(path).name == "new_cuda.dll":
            exc = PermissionError(13, "being used by another process")
            exc.winerror = 32  # type: ignore[attr-defined]
            raise exc
        real_unlink(path)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(os, "unlink", locked)
    monkeypatch.setattr(fileops, "RETRY", fileops.RetryPolicy(sleep=sleep, clock=lambda: now[0]))

    restore_snapshot(snap)

    assert differences(before, full_digest(env.root)) == []
    (trashed,) = (env.root / ".torchdoctor" / "trash").iterdir()
    assert trashed.name.endswith("new_cuda.dll") and now[0] >= 10.0
    monkeypatch.undo()
    recover(env)  # the next run empties the trash
    assert not (env.root / ".torchdoctor").exists()


# --- 16: check reports an interrupted fix, read-only ----------------------------------------------


@pytest.mark.parametrize("with_torch", [True, False])
def test_check_reports_an_interrupted_fix_without_touching_it(tmp_path: Path, with_torch: bool) -> None:
    env = make_venv(tmp_path / "venv")
    if with_torch:
        install_standins(
            env, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")]
        )
    folder = dead_snapshot(env)
    before = full_digest(env.root)
    snapshot_before = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))

    data = check_json(env, tmp_path)

    environments = data["environments"]
    assert isinstance(environments, list)
    report: dict[str, Any] = environments[0]
    assert report["status"] == "broken"
    first = report["findings"][0]
    assert first["code"] == "fix-interrupted" and first["severity"] == "error"
    assert f"torchdoctor fix --env {env.root}" in first["fix"]
    assert ("torch 2.7.1+cu128" if with_torch else "without torch") in first["message"] + first["fix"]
    assert differences(before, full_digest(env.root)) == []
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == snapshot_before


def test_a_fix_after_a_damaged_leftover_says_so_once_and_repairs(
    tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    root = tmp_path / "index"
    publish(
        root, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")], "cu128"
    )
    env = make_venv(tmp_path / "venv")
    install_standins(env, OLD)
    folder = dead_snapshot(env)
    victim = next(f for f in load_snapshot(folder).files if f.path.endswith("torch/version.py"))
    (folder / "files" / victim.stored).unlink()
    with IndexServer(root) as server:
        first = fix(tmp_path, env, server.url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "saved copy cannot be used" in first.stderr and "set aside in" in first.stderr
        assert "Installed torch 2.7.1+cu128" in first.stdout
        second = fix(tmp_path, env, server.url)
    assert second.returncode == 0, second.stderr
    assert "set aside" not in second.stderr  # told once, never again, never exit 3
    assert pending_folders(env, td_dirs) == []
    assert (folder.parent / (folder.name + ".damaged")).is_dir()


class UvWithoutDryRun(Backend):
    """A real installer (uv underneath) that torchdoctor cannot ask for a dry run, as an installer
    too old for `--dry-run` would be: only the metadata says what to save."""

    name = "uv-without-dry-run"
    index_variable = "UV_DEFAULT_INDEX"  # uv underneath reads its index from there

    def __init__(self) -> None:
        self.inner = uv()

    def preflight(self, env: PythonEnv) -> None:
        self.inner.preflight(env)

    def commands(self, env: PythonEnv, wheels: Sequence[Path], *, index_url: str | None) -> list[list[str]]:
        return self.inner.commands(env, wheels, index_url=index_url)


class Steps:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, text: str) -> None:
        self.lines.append(text)

    def detail(self, text: str) -> None:
        self.lines.append(text)

    def download(self, file: object, done: int, total: int | None) -> None:
        pass


def test_a_change_nobody_could_save_is_exit_3_naming_it_never_restored_exactly(tmp_path: Path) -> None:
    """Without a dry run, tdhelper's upgrade (through tdnew, not installed) cannot be foreseen.
    The restore then puts back everything else and says, with exit 3, what it could not."""
    root = tmp_path / "index"
    publish(
        root,
        [
            StandIn("tdhelper", "1.0"),
            StandIn("tdhelper", "2.0"),
            StandIn("tdnew", "1.0", requires=["tdhelper>=2"]),
        ],
        "cu128",
    )
    broken = StandIn("torch", "2.7.1+cu128", cuda="12.8", requires=["tdnew"], import_error="boom")
    publish(root, [broken, StandIn("torchvision", "0.22.1+cu128")], "cu128")
    env = make_venv(tmp_path / "venv")
    install_standins(env, [*OLD, StandIn("tdhelper", "1.0")])
    knowledge = load_knowledge(Path("/nonexistent"))
    hardware = hw.hardware("572.16", "12.8", hw.RTX_4090)
    steps = Steps()
    with IndexServer(root) as server:
        plan = make_plan(inspect_target(env, knowledge), hardware, knowledge, IndexClient(server.url),
                         index_base=server.url)  # fmt: skip
        with fix_session(env, steps), pytest.raises(RestoreFailedError) as info:
            apply_plan(env, plan, hardware, knowledge=knowledge, backend=UvWithoutDryRun(), reporter=steps,
                       log=io.StringIO(), options=FixOptions(run_bench=False))  # fmt: skip
    assert info.value.exit_code == 3
    assert "tdhelper 1.0 (now 2.0)" in str(info.value) and "restored exactly" not in str(info.value)
    assert (sp(env) / "torch-2.7.1+cpu.dist-info").is_dir() and not (sp(env) / "tdnew").exists()
