"""What only real Windows can show: paths past MAX_PATH and a DLL that is loaded while restoring.

The same rules are proven on Linux with fakes (tests/unit/test_fileops.py); these run the real
Win32 file API.
"""

from __future__ import annotations

import ctypes
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.envs import site_packages_env, unpack_standin
from tests.support.fulldigest import differences, full_digest
from tests.support.standin import StandIn
from torchdoctor.service.install import fileops
from torchdoctor.service.install.snapshot import restore_snapshot, take_snapshot
from torchdoctor.service.models import Platform

pytestmark = [pytest.mark.windows, pytest.mark.skipif(sys.platform != "win32", reason="needs Windows")]

DEEP = "torch/include/" + "/".join(["a_rather_long_folder_name_for_headers"] * 4) + "/deepest_header_file.h"


def test_a_snapshot_and_restore_past_max_path(tmp_path: Path) -> None:
    root = Path(fileops.long_path(str(tmp_path / ("p" * 60) / ("q" * 40) / "venv")))
    env = site_packages_env(root, Platform.WINDOWS)
    unpack_standin(env, StandIn("torch", "2.7.1+cpu", files={DEEP: "// deep\n"}))
    deepest = env.site_packages[0].joinpath(*DEEP.split("/"))
    assert len(fileops.short_path(str(deepest))) > 260
    before = full_digest(root)
    snap = take_snapshot(env)
    shutil.rmtree(env.site_packages[0] / "torch")

    restore_snapshot(snap)

    assert differences(before, full_digest(root)) == []


def test_a_loaded_dll_the_failed_fix_wrote_goes_to_the_trash(tmp_path: Path) -> None:
    env = site_packages_env(tmp_path / "venv", Platform.WINDOWS)
    unpack_standin(env, StandIn("torch", "2.7.1+cpu"))
    before = full_digest(env.root)
    snap = take_snapshot(env)
    dll = env.site_packages[0] / "torch" / "lib" / "new_kernels.dll"
    dll.parent.mkdir(parents=True)
    shutil.copy2(Path(sys.base_prefix) / "python3.dll", dll)
    # ctypes' Windows-only names, reached by getattr: mypy checks this file on Linux too.
    loaded = getattr(ctypes, "WinDLL")(str(dll))  # noqa: B009  # now it can be renamed, not deleted
    try:
        restore_snapshot(snap)
    finally:
        getattr(ctypes, "windll").kernel32.FreeLibrary(loaded._handle)  # noqa: B009
    assert differences(before, full_digest(env.root)) == []
    assert any(p.name.endswith("new_kernels.dll") for p in fileops.trash_dir(env.root).iterdir())
    assert fileops.empty_trash(env.root) == []
