"""Choosing uv or pip, the commands each runs, and reading their output (pure parts + the streamer)."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from torchdoctor.service.errors import EXIT_BAD_INPUT, BadInputError
from torchdoctor.service.install.installers import (
    InstallerUnavailableError,
    PipBackend,
    UnknownInstallerError,
    UvBackend,
    UvNotFoundError,
    failure_line,
    installer_environ,
    make_backend,
    parse_pip_version,
    progress_message,
    resolve_backend,
    stream_process,
    wheel_projects,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

WHEELS = [
    Path("/w/torch-2.7.1+cu128-cp311-cp311-linux_x86_64.whl"),
    Path("/w/torchvision-0.22.1-py3-none-any.whl"),
]


def env(*, has_pip: bool) -> PythonEnv:
    root = Path("/envs/proj")
    return PythonEnv(root, root / "bin/python", "3.11.7", EnvKind.VENV, has_pip, (), Platform.LINUX)


# --- resolve_backend -------------------------------------------------------------------------


def test_uv_is_chosen_when_found_and_says_where_and_which() -> None:
    name, why = resolve_backend(None, uv_path="/usr/bin/uv", env=env(has_pip=True), uv_version="0.13.9")
    assert name == "uv"
    assert why == "uv 0.13.9 found at /usr/bin/uv"


@pytest.mark.parametrize(
    ("has_pip", "expected_why"),
    [
        (True, "uv was not found; using the environment's own pip"),
        (False, "uv was not found and the environment has no pip; using torchdoctor's pip with --python"),
    ],
)
def test_pip_without_uv(has_pip: bool, expected_why: str) -> None:
    assert resolve_backend(None, uv_path=None, env=env(has_pip=has_pip)) == ("pip", expected_why)


def test_installer_pip_forces_pip_even_with_uv_present() -> None:
    name, why = resolve_backend("pip", uv_path="/usr/bin/uv", env=env(has_pip=False))
    assert name == "pip"
    assert "--installer pip" in why and "--python" in why


def test_installer_uv_is_case_insensitive() -> None:
    assert resolve_backend("UV", uv_path="/x/uv", env=env(has_pip=True))[0] == "uv"


def test_installer_uv_without_uv_is_bad_input_with_a_hint() -> None:
    with pytest.raises(UvNotFoundError) as info:
        resolve_backend("uv", uv_path=None, env=env(has_pip=True))
    assert isinstance(info.value, BadInputError)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "uv was not found" in str(info.value)
    assert info.value.hint is not None and "--installer" in info.value.hint


def test_unknown_installer_is_bad_input() -> None:
    with pytest.raises(UnknownInstallerError, match="'conda'"):
        resolve_backend("conda", uv_path="/x/uv", env=env(has_pip=True))


def test_make_backend() -> None:
    assert isinstance(make_backend("uv", uv_path="/x/uv"), UvBackend)
    assert isinstance(make_backend("pip", uv_path=None), PipBackend)
    with pytest.raises(UvNotFoundError):
        make_backend("uv", uv_path=None)


# --- commands ---------------------------------------------------------------------------------


def test_uv_command_reinstalls_only_the_given_projects() -> None:
    (argv,) = UvBackend("/x/uv").commands(env(has_pip=False), WHEELS, index_url=None)
    assert argv[:5] == ["/x/uv", "pip", "install", "--no-config", "--python"]
    assert argv[5] == "/envs/proj/bin/python"
    assert "--reinstall" not in argv  # the blanket form would reinstall every dependency too
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--reinstall-package"]
    assert pairs == ["torch", "torchvision"]
    assert "--no-index" in argv
    assert argv[-2:] == [str(w) for w in WHEELS]


def test_uv_command_with_an_index_gets_it_from_its_environment_not_argv() -> None:
    backend = UvBackend("/x/uv")
    (argv,) = backend.commands(env(has_pip=True), WHEELS, index_url="https://i.example/cu128")
    assert "--no-index" not in argv
    assert not any("i.example" in a for a in argv)
    assert "--default-index" not in argv and "--index-url" not in argv and "--extra-index-url" not in argv
    assert backend.index_environ("https://i.example/cu128") == {"UV_DEFAULT_INDEX": "https://i.example/cu128"}
    assert backend.index_environ(None) == {}


def test_pip_command_uses_the_environments_pip() -> None:
    replace, deps = PipBackend(host_python="/host/python").commands(env(has_pip=True), WHEELS, index_url=None)
    for argv in (replace, deps):
        # -s: pip can never fall back to the user's site-packages
        assert argv[:5] == ["/envs/proj/bin/python", "-s", "-m", "pip", "install"]
        # not --isolated: it would ignore PIP_INDEX_URL, the only argv-free way to give the index
        assert "--isolated" not in argv and "--python" not in argv
        assert argv[-2:] == [str(w) for w in WHEELS]
    assert {"--force-reinstall", "--no-deps", "--no-index"} <= set(replace)
    assert "--force-reinstall" not in deps and "--no-deps" not in deps
    assert "--no-index" in deps


def test_pip_command_without_pip_in_the_env_uses_python_option() -> None:
    replace, deps = PipBackend(host_python="/host/python").commands(
        env(has_pip=False), WHEELS, index_url="http://127.0.0.1:8000/cpu"
    )
    for argv in (replace, deps):
        assert argv[:7] == ["/host/python", "-s", "-m", "pip", "--python", "/envs/proj/bin/python", "install"]
        assert "--index-url" not in argv and not any("127.0.0.1" in a for a in argv)
    assert "--no-index" in replace  # the wheels themselves never come from an index
    assert "--no-index" not in deps  # the dependencies may: from PIP_INDEX_URL
    assert PipBackend().index_environ("http://127.0.0.1:8000/cpu") == {
        "PIP_INDEX_URL": "http://127.0.0.1:8000/cpu"
    }


def test_frozen_torchdoctor_has_no_pip_for_an_env_without_pip() -> None:
    backend = PipBackend()
    backend.host_python = None  # what a frozen torchdoctor.exe has
    with pytest.raises(InstallerUnavailableError, match="has no pip"):
        backend.commands(env(has_pip=False), WHEELS, index_url=None)


def test_wheel_projects() -> None:
    wheels = [*WHEELS, Path("Torch_Audio-2.7.1-py3-none-any.whl"), WHEELS[0]]
    assert wheel_projects(wheels) == ["torch", "torchvision", "torch-audio"]
    with pytest.raises(BadInputError, match="not a wheel"):
        wheel_projects([Path("torch.tar.gz")])


# --- output -----------------------------------------------------------------------------------

UV_CORRUPT = """\
Using Python 3.11.7 environment at: v1
error: Failed to read `torch @ file:///tmp/exp/bad/torch-2.7.1+cu128-py3-none-any.whl`
  cause: Failed to read metadata: /tmp/exp/bad/torch-2.7.1+cu128-py3-none-any.whl
  cause: Failed to read from zip file
  cause: unable to locate the end of central directory record
"""

UV_EXTERNALLY_MANAGED = """\
Using Python 3.11.2 environment at: /usr
error: The interpreter at `/usr` is externally managed, and indicates the following:

  To install Python packages system-wide, try apt install
  python3-xyz, where xyz is the package you are trying to
  install.

hint: Consider creating a virtual environment, e.g., with `uv venv`
"""

PIP_CORRUPT = """\
Processing ./bad/torch-2.7.1+cu128-py3-none-any.whl
ERROR: Wheel 'torch' located at /tmp/exp/bad/torch-2.7.1+cu128-py3-none-any.whl is invalid.
"""

PIP_RESOLVE = """\
Processing /w/torch-2.7.1-py3-none-any.whl
ERROR: Could not find a version that satisfies the requirement tddep==1.0 (from torch) (from versions: none)
ERROR: No matching distribution found for tddep==1.0
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            UV_CORRUPT,
            "Failed to read `torch @ file:///tmp/exp/bad/torch-2.7.1+cu128-py3-none-any.whl`: "
            "unable to locate the end of central directory record",
        ),
        (
            UV_EXTERNALLY_MANAGED,
            "The interpreter at `/usr` is externally managed, and indicates the following",
        ),
        (PIP_CORRUPT, "Wheel 'torch' located at /tmp/exp/bad/torch-2.7.1+cu128-py3-none-any.whl is invalid."),
        (PIP_RESOLVE, "No matching distribution found for tddep==1.0"),
        ("Killed\n\n", "Killed"),
        ("WARNING: something\n", "no output"),
        ("", "no output"),
    ],
)
def test_failure_line(output: str, expected: str) -> None:
    assert failure_line(output.splitlines()) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "Processing /tmp/w/torch-2.7.1+cu128-py3-none-any.whl",
            "Preparing torch-2.7.1+cu128-py3-none-any.whl…",
        ),
        ("Collecting tddep==1.0 (from torch==2.7.1)", "Resolving tddep==1.0…"),
        (
            "  Downloading http://127.0.0.1:1/x/tddep-1.0-py3-none-any.whl (1.2 kB)",
            "Downloading tddep-1.0-py3-none-any.whl…",
        ),
        ("Installing collected packages: torch, torchvision", "Installing torch, torchvision…"),
        ("  Attempting uninstall: torch", "Removing the previous torch…"),
        ("Successfully installed torch-2.15.0", "Installed torch-2.15.0"),
        ("Resolved 3 packages in 12ms", "Resolved 3 packages"),
        ("Uninstalled 1 package in 2ms", "Removed 1 package"),
        ("Installed 2 packages in 5ms", "Installed 2 packages"),
        (" - torch==2.7.1+cu128", "Removed torch 2.7.1+cu128"),
        (" + torch==2.15.0", "Installed torch 2.15.0"),
        (" ~ torch==2.7.1", "Reinstalled torch 2.7.1"),
        ("Using Python 3.11.7 environment at: /envs/proj", None),
        ("Requirement already satisfied: tddep==1.0 in ./site-packages", None),
        ("", None),
    ],
)
def test_progress_message(line: str, expected: str | None) -> None:
    assert progress_message(line) == expected


def test_parse_pip_version() -> None:
    assert str(parse_pip_version("pip 23.2.1 from /x/pip (python 3.11)")) == "23.2.1"
    assert parse_pip_version("No module named pip") is None


def test_installer_environ_drops_machine_settings() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/ana",
        "PIP_FIND_LINKS": "/opt/wheels",
        "PIP_CONSTRAINT": "/etc/c.txt",
        "UV_CONSTRAINT": "/etc/c.txt",
        "UV_INDEX_URL": "https://evil.example/simple",
        "UV_CACHE_DIR": "/cache/uv",
        "PIP_CACHE_DIR": "/cache/pip",
        "PYTHONPATH": "/mine",
        "VIRTUAL_ENV": "/other/venv",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    env_vars = installer_environ(base)
    for gone in (
        "PIP_FIND_LINKS",
        "PIP_CONSTRAINT",
        "UV_CONSTRAINT",
        "UV_INDEX_URL",
        "PYTHONPATH",
        "VIRTUAL_ENV",
    ):
        assert gone not in env_vars
    assert env_vars["PIP_CONFIG_FILE"] == os.devnull
    assert env_vars["UV_NO_CONFIG"] == "1"
    for kept in ("PATH", "HOME", "UV_CACHE_DIR", "PIP_CACHE_DIR", "HTTPS_PROXY"):
        assert env_vars[kept] == base[kept]


# --- the streaming helper (a real child process) ----------------------------------------------


def test_stream_process_relays_lines_in_order_and_merges_stderr() -> None:
    code = "import sys\nfor i in range(3):\n    print(f'out {i}', flush=True)\nprint('err line', file=sys.stderr)\nsys.exit(4)"
    log = io.StringIO()
    seen: list[str] = []
    result = stream_process(
        [sys.executable, "-c", code], timeout=30, env=dict(os.environ), log=log, on_line=seen.append
    )
    assert result.returncode == 4 and not result.timed_out
    assert seen[:3] == ["out 0", "out 1", "out 2"]
    assert "err line" in seen
    text = log.getvalue()
    assert text.startswith("$ ") and "out 2\n" in text and "(exit status 4)" in text


def test_stream_process_kills_on_timeout() -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    log = io.StringIO()
    began = time.monotonic()
    result = stream_process([sys.executable, "-c", code], timeout=1.5, env=dict(os.environ), log=log)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - began < 15
    assert result.tail == ("started",)
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and code in p.info["cmdline"]
    ]


def test_stream_process_kills_the_child_when_the_caller_is_interrupted() -> None:
    code = "import time\nprint('go', flush=True)\ntime.sleep(60)"

    def interrupt(_line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_process(
            [sys.executable, "-c", code],
            timeout=30,
            env=dict(os.environ),
            log=io.StringIO(),
            on_line=interrupt,
        )
    time.sleep(0.2)
    alive = [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["cmdline"] and code in p.info["cmdline"]
    ]
    assert all(p.info["status"] == psutil.STATUS_ZOMBIE for p in alive)
