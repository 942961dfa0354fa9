"""Private folders and files, unique pruned logs, and caches kept to a size."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchdoctor.service import logfiles, paths
from torchdoctor.service.install import cache
from torchdoctor.service.logfiles import LogFile, create_log, list_logs, logs_to_prune

posix_modes = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_modes
def test_private_dir_makes_every_missing_level_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        made = paths.private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for level in (tmp_path / "a", tmp_path / "a" / "b", made):
        assert _mode(level) == 0o700, level


@posix_modes
def test_private_files_are_0600_even_when_they_existed(tmp_path: Path) -> None:
    existing = tmp_path / "f"
    existing.write_text("old")
    existing.chmod(0o644)
    paths.write_private(existing, "new")
    assert existing.read_text() == "new" and _mode(existing) == 0o600
    with paths.open_private(tmp_path / "g", "wb") as fh:
        fh.write(b"x")
    assert _mode(tmp_path / "g") == 0o600


@posix_modes
def test_the_cli_creates_state_cache_and_log_folders_private(tmp_path: Path) -> None:
    env = dict(os.environ)
    for name in ("STATE", "CACHE", "LOG"):
        env[f"TORCHDOCTOR_{name}_DIR"] = str(tmp_path / "home" / name.lower())
    subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "cache", "clean"], env=env, timeout=60, check=True
    )
    for name in ("state", "cache", "log"):
        assert _mode(tmp_path / "home" / name) == 0o700
    assert _mode(tmp_path / "home") == 0o700  # created by us too


@posix_modes
def test_logs_are_unique_private_and_never_shared(tmp_path: Path) -> None:
    made = []
    for _ in range(5):  # the same second, the same pid, the same label
        path, fh = create_log("fix", "proj env/../x", folder=tmp_path)
        with fh:
            fh.write("run\n")
        made.append(path)
    assert len(set(made)) == 5
    for path in made:
        assert _mode(path) == 0o600
        assert path.name.startswith("fix-") and f"-{os.getpid()}" in path.name
        assert path.parent == tmp_path and path.name.endswith("-proj_env_x.log")


def _log(name: str, mtime: float) -> LogFile:
    return LogFile(Path(name), name.split("-", maxsplit=1)[0], mtime)


def test_pruning_keeps_the_newest_per_kind_and_drops_old_ones_but_the_newest() -> None:
    now = 1_000_000_000.0
    day = 86400.0
    fixes = [_log(f"fix-{i}", now - i) for i in range(25)]
    crash = [_log("crash-a", now - 400 * day), _log("crash-b", now - 500 * day)]
    doomed = logs_to_prune(fixes + crash, keep=20, max_age_days=30, now=now)
    names = {log.path.name for log in doomed}
    assert names == {f"fix-{i}" for i in range(20, 25)} | {"crash-b"}


def test_create_log_prunes_its_own_kind_only(tmp_path: Path) -> None:
    for i in range(logfiles.LOG_KEEP + 3):
        old = tmp_path / f"fix-20200101T0000{i:02d}Z-1-x.log"
        old.write_text("")
        recent = time.time() - 1000 + i
        os.utime(old, (recent, recent))
    other = tmp_path / "crash-20200101T000000Z-1.log"
    other.write_text("")
    unrelated = tmp_path / "tray.log"
    unrelated.write_text("")
    path, fh = create_log("fix", "x", folder=tmp_path)
    fh.close()
    left = [log.path for log in list_logs(tmp_path) if log.kind == "fix"]
    assert path in left
    assert len(left) == logfiles.LOG_KEEP + 1  # the newest 20 before it, and itself
    assert other.exists() and unrelated.exists()


def test_cache_eviction_is_least_recently_used_first(tmp_path: Path) -> None:
    files = []
    for i, name in enumerate(["old.whl", "mid.whl", "new.whl"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
        files.append(path)
    cache.touch(files[0])  # used just now: the newest
    part = tmp_path / "big.whl.99999999.part"
    part.write_bytes(b"x" * 10_000)  # partials are not the cache's to evict
    removed = cache.trim(tmp_path, max_bytes=200, keep=())
    assert removed == [tmp_path / "mid.whl"]
    removed = cache.trim(tmp_path, max_bytes=100, keep=(tmp_path / "new.whl",))
    assert removed == [tmp_path / "old.whl"]
    assert (tmp_path / "new.whl").exists() and part.exists()
