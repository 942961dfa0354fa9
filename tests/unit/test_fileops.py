"""Windows file-operation rules, proven on Linux: long paths (pure), transient locks (a fake
WinError at the os boundary, a fake clock), the trash for files that stay locked."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from torchdoctor.service.install import fileops
from torchdoctor.service.install.fileops import RetryPolicy, long_path, short_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "C:\\Users\\ana\\venv\\Lib\\site-packages\\torch",
            "\\\\?\\C:\\Users\\ana\\venv\\Lib\\site-packages\\torch",
        ),
        ("C:/Users/ana/venv/Lib", "\\\\?\\C:\\Users\\ana\\venv\\Lib"),  # the prefix turns off "/" -> "\\"
        ("C:\\a\\.\\b\\..\\c", "\\\\?\\C:\\a\\c"),  # and "." / ".." resolution
        ("\\\\server\\share\\env\\x", "\\\\?\\UNC\\server\\share\\env\\x"),
        ("\\\\?\\C:\\already", "\\\\?\\C:\\already"),
    ],
)
def test_long_path(given: str, expected: str) -> None:
    assert long_path(given) == expected
    assert short_path(long_path(given)) in (given.replace("/", "\\"), expected[4:], "\\\\" + expected[8:])


@pytest.mark.parametrize("relative", ["venv\\Lib", "\\no-drive\\x", "C:relative"])
def test_long_path_refuses_what_it_would_change_the_meaning_of(relative: str) -> None:
    with pytest.raises(ValueError, match="not an absolute Windows path"):
        long_path(relative)


def test_torchs_deepest_path_crosses_max_path_and_the_long_form_keeps_it_whole() -> None:
    prefix = (
        "C:\\Users\\a-rather-long-user-name\\projects\\some-project-folder-of-hers\\.venv\\Lib\\site-packages"
    )
    deep = prefix + "\\" + "x" * 171
    assert len(deep) > 260
    assert long_path(deep).endswith("x" * 171) and long_path(deep).startswith("\\\\?\\C:\\Users")


def test_io_path_is_the_path_itself_off_windows(tmp_path: Path) -> None:
    assert fileops.io_path(tmp_path / "a", windows=False) == str(tmp_path / "a")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=lambda: self.now)


def win_error(winerror: int) -> PermissionError:
    exc = PermissionError(
        13, "The process cannot access the file because it is being used by another process"
    )
    exc.winerror = winerror  # type: ignore[attr-defined]  # what Windows' OSError carries
    return exc


def locked_unlink(
    monkeypatch: pytest.MonkeyPatch, victim: Path, failures: int | None, winerror: int = 32
) -> list[int]:
    """os.unlink fails for `victim` with `winerror` `failures` times (None: always)."""
    real = os.unlink
    calls: list[int] = []

    def fake(path: str | Path, *args: object, **kwargs: object) -> None:
        if os.fspath(path) == str(victim):
            calls.append(1)
            if failures is None or len(calls) <= failures:
                raise win_error(winerror)
        real(path)

    monkeypatch.setattr(os, "unlink", fake)
    return calls


@pytest.mark.parametrize("winerror", [5, 32])
def test_a_short_lock_is_waited_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, winerror: int) -> None:
    victim = tmp_path / "torch_cpu.dll"
    victim.write_bytes(b"x")
    clock = FakeClock()
    calls = locked_unlink(monkeypatch, victim, failures=3, winerror=winerror)
    fileops.remove_file(victim, clock.policy())
    assert not victim.exists()
    assert len(calls) == 4 and len(clock.sleeps) == 3
    assert clock.sleeps == sorted(clock.sleeps)  # backing off


def test_a_lock_is_waited_out_for_at_least_ten_seconds_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "held.pyd"
    victim.write_bytes(b"x")
    clock = FakeClock()
    locked_unlink(monkeypatch, victim, failures=None)
    with pytest.raises(PermissionError) as info:
        fileops.remove_file(victim, clock.policy())
    assert info.value.winerror == 32  # type: ignore[attr-defined]
    assert clock.now >= 10.0
    assert max(clock.sleeps) <= 1.0  # never one long blind wait


def test_other_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "f"
    victim.write_bytes(b"x")
    clock = FakeClock()

    def fail(_path: object, *_a: object, **_k: object) -> None:
        raise OSError(5, "Input/output error")  # errno 5 on Linux, not a WinError

    monkeypatch.setattr(os, "unlink", fail)
    with pytest.raises(OSError, match="Input/output"):
        fileops.remove_file(victim, clock.policy())
    assert clock.sleeps == []


def test_a_file_that_stays_locked_goes_to_the_trash_and_the_next_run_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "env"
    (root / "lib").mkdir(parents=True)
    victim = root / "lib" / "new_cuda.dll"
    victim.write_bytes(b"loaded")
    clock = FakeClock()
    monkeypatch.setattr(fileops, "RETRY", clock.policy())
    locked_unlink(monkeypatch, victim, failures=None)

    moved = fileops.remove_or_trash(victim, root)

    assert moved is not None and moved.parent == root / ".torchdoctor" / "trash"
    assert not victim.exists() and moved.read_bytes() == b"loaded"
    assert clock.now >= 10.0
    monkeypatch.undo()  # the program holding it has exited
    assert fileops.empty_trash(root) == []
    assert not (root / ".torchdoctor" / "trash").exists()


def test_a_read_only_file_is_removed(tmp_path: Path) -> None:
    victim = tmp_path / "ro.py"
    victim.write_text("x")
    victim.chmod(0o444)
    fileops.remove_file(victim)
    assert not victim.exists()


def test_retry_returns_the_result(tmp_path: Path) -> None:
    clock = FakeClock()
    attempts: list[int] = []

    def op() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise win_error(5)
        return "done"

    run: Callable[[], str] = op
    assert fileops.retry_locked(run, clock.policy()) == "done"
