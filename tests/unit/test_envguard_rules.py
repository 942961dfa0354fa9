"""The pure decisions behind the in-use check: what ties a process to an environment, and which
installers are an interrupted fix's orphans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchdoctor.service.install.envguard import (
    Interrupted,
    ProcessInfo,
    Roots,
    Seen,
    cheap_reason,
    is_installer,
    looks_like_python,
    program_path,
    split_orphans,
)

ROOT = Path("/home/ana/proj/.venv")
PROGRAMS = {"/home/ana/proj/.venv/bin/python", "/usr/bin/python3", "/usr/bin/bash"}


def is_program(path: str) -> bool:
    return path in PROGRAMS


def reason(
    exe: str | None,
    cmdline: tuple[str, ...],
    *,
    cwd: str | None = "/home/ana",
    environ: dict[str, str] | None = None,
    name: str | None = None,
) -> str | None:
    seen = Seen(exe, name or (Path(exe).name if exe else None), cmdline, cwd, environ)
    return cheap_reason(Roots(ROOT), seen, is_program=is_program)


def test_program_path_follows_cpython_s_rules() -> None:
    venv_first = f"/home/ana/proj/.venv/bin{os.pathsep}/usr/bin"
    assert program_path("python", cwd="/x", path_var=venv_first, is_program=is_program) == (
        "/home/ana/proj/.venv/bin/python"
    )
    assert program_path("python3", cwd="/x", path_var=venv_first, is_program=is_program) == "/usr/bin/python3"
    assert program_path("nothing", cwd="/x", path_var=venv_first, is_program=is_program) is None
    assert program_path(".venv/bin/python", cwd="/home/ana/proj", path_var=None, is_program=is_program) == (
        "/home/ana/proj/.venv/bin/python"
    )
    assert program_path(".venv/bin/python", cwd=None, path_var=None, is_program=is_program) is None
    # Unknown variables (another user's process): no guess from the working folder.
    assert (
        program_path("python", cwd="/home/ana/proj/.venv/bin", path_var=None, is_program=is_program) is None
    )
    # An empty PATH entry is the working folder.
    assert program_path("python", cwd="/home/ana/proj/.venv/bin", path_var="", is_program=is_program) == (
        "/home/ana/proj/.venv/bin/python"
    )


@pytest.mark.parametrize(
    ("exe", "cmdline", "environ", "expected"),
    [
        ("/home/ana/proj/.venv/bin/python3.12", ("python",), None, "its program is in the environment"),
        (
            "/usr/bin/python3.12",
            ("/home/ana/proj/.venv/bin/python", "x.py"),
            None,
            "it runs the environment's interpreter",
        ),
        ("/usr/bin/python3.12", (".venv/bin/python",), None, None),  # relative to /home/ana: not there
        (
            "/usr/bin/python3.12",
            ("python", "train.py"),
            {"PATH": "/home/ana/proj/.venv/bin:/usr/bin"},
            "it runs the environment's interpreter",
        ),
        ("/usr/bin/python3.12", ("python", "train.py"), {"PATH": "/usr/bin"}, None),
        (
            "/usr/bin/python3.12",
            ("python3",),
            {"PATH": "/usr/bin", "VIRTUAL_ENV": "/home/ana/proj/.venv"},
            "it is a python started in the activated environment",
        ),
        # The shell that activated it holds nothing of the environment.
        (
            "/usr/bin/bash",
            ("bash",),
            {"PATH": "/home/ana/proj/.venv/bin:/usr/bin", "VIRTUAL_ENV": str(ROOT)},
            None,
        ),
        (
            "/usr/local/bin/uv",
            ("uv", "pip", "install", "--python", "/home/ana/proj/.venv/bin/python", "torch"),
            None,
            "an installer is working on the environment",
        ),
        (
            "/usr/bin/python3",
            ("python3", "-m", "pip", "--python=/home/ana/proj/.venv/bin/python", "install"),
            None,
            "an installer is working on the environment",
        ),
        ("/usr/bin/python3", ("python3", "-c", "pass", "/home/ana/proj/.venv"), None, None),
        ("/home/ana/proj/.venvx/bin/python", ("python",), None, None),  # a sibling folder, not inside
    ],
)
def test_cheap_reasons(
    exe: str, cmdline: tuple[str, ...], environ: dict[str, str] | None, expected: str | None
) -> None:
    assert reason(exe, cmdline, environ=environ) == expected


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (("/usr/local/bin/uv", "pip", "install", "--python", "p", "w.whl"), True),
        (("/env/bin/python", "-m", "pip", "install", "w.whl"), True),
        (("python", "-m", "pip", "--python", "p", "uninstall", "-y", "torch"), True),
        (("C:\\env\\Scripts\\pip.exe", "install", "torch"), True),
        (("python", "-m", "pip", "list"), False),
        (("python", "train.py", "install"), False),
        (("uv", "run", "x"), False),
        ((), False),
    ],
)
def test_which_commands_are_installers(cmdline: tuple[str, ...], expected: bool) -> None:
    assert is_installer(cmdline) is expected


def test_pythons_are_told_by_name() -> None:
    assert looks_like_python("/usr/bin/python3.12", None)
    assert looks_like_python(None, "python3.13t")
    assert looks_like_python("C:\\Python312\\pythonw.exe", None)
    assert not looks_like_python("/usr/bin/bash", "bash")
    assert not looks_like_python("/usr/bin/python-config", None)


def info(
    pid: int, *, installer: bool = False, started: float | None = 100.0, parent: int | None = 1
) -> ProcessInfo:
    return ProcessInfo(pid, "p", "r", started=started, parent=parent, installer=installer)


def test_without_an_interrupted_fix_nothing_is_an_orphan() -> None:
    found = [info(10, installer=True)]
    assert split_orphans(found, []) == ([], found)


def test_an_installer_started_after_the_dead_fix_s_snapshot_is_its_orphan_with_its_children() -> None:
    uv = info(10, installer=True, started=100.0)
    uv_python = info(11, started=101.0, parent=10)  # uv asking the environment's python
    grandchild = info(12, started=102.0, parent=11)
    user_program = info(20, started=50.0)
    old_installer = info(30, installer=True, started=10.0)  # running since before that fix
    unknown_start = info(40, installer=True, started=None)
    orphans, others = split_orphans(
        [uv, uv_python, grandchild, user_program, old_installer, unknown_start],
        [Interrupted(pid=5, created=99.0)],
    )
    assert [p.pid for p in orphans] == [10, 11, 12]
    assert [p.pid for p in others] == [20, 30, 40]


def test_the_earliest_interrupted_fix_counts() -> None:
    orphans, _ = split_orphans(
        [info(10, installer=True, started=60.0)], [Interrupted(5, 99.0), Interrupted(6, 59.0)]
    )
    assert [p.pid for p in orphans] == [10]


def test_a_refusal_names_programs_not_their_arguments() -> None:
    assert (
        ProcessInfo(42, "python3.12", "it runs the environment's interpreter").describe()
        == "python3.12 (pid 42)"
    )


def test_a_child_the_dead_fix_marked_is_its_orphan_whenever_it_started() -> None:
    verify = ProcessInfo(10, "python", "r", started=1.0, child_of=5)  # marked by the dead fix (pid 5)
    other_run = ProcessInfo(11, "python", "r", started=200.0, child_of=8)  # a live torchdoctor's child
    orphans, others = split_orphans([verify, other_run], [Interrupted(pid=5, created=99.0)])
    assert [p.pid for p in orphans] == [10]
    assert [p.pid for p in others] == [11]
