"""Real uv and real pip installing stand-in wheels into real venvs, with and without pip.

This machine has a global pip config (/etc/xdg/pip: a constraint file capping torch at 2.14.1) and
PIP_FIND_LINKS=/opt/wheels; the installs below must not be affected by either, which is what
PIP_CONFIG_FILE=os.devnull, `--no-config` and the scrubbed environment are for.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.envs import install_standins, make_venv, uv_bin
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn, build_wheel
from torchdoctor.service import proc
from torchdoctor.service.install.installers import Backend, InstallFailedError, PipBackend, UvBackend
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

TORCH_OLD = StandIn("torch", "2.7.1+cu128", cuda="12.8")
UNRELATED = StandIn("tdunrelated", "1.0")
# Above the machine's global constraint (torch<=2.14.1): a pip that read that config would refuse it.
TORCH_NEW = StandIn("torch", "2.15.0+cpu")
GLOBAL_PIP_CONF = Path("/etc/xdg/pip/pip.conf")


@pytest.fixture(params=["with-pip", "without-pip"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> PythonEnv:
    env = make_venv(tmp_path / "venv", seed_pip=request.param == "with-pip")
    assert env.has_pip is (request.param == "with-pip")
    install_standins(env, [TORCH_OLD, UNRELATED])
    return env


@pytest.fixture(params=["uv", "pip"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return UvBackend(uv_bin()) if request.param == "uv" else PipBackend()


@pytest.fixture
def wheels(tmp_path: Path) -> Callable[[StandIn], Path]:
    return lambda spec: build_wheel(spec, tmp_path / "wheels")


def installed(env: PythonEnv, project: str) -> str | None:
    code = f"import importlib.metadata as m\ntry:\n    print(m.version({project!r}))\nexcept m.PackageNotFoundError:\n    print('-')"
    done = proc.run([env.python, "-I", "-c", code], timeout=60)
    assert done.ok, done.stderr
    out = done.stdout.strip()
    return None if out == "-" else out


def file_identities(env: PythonEnv, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    sp = env.site_packages[0]
    found: dict[str, tuple[int, int]] = {}
    for entry in sp.iterdir():
        if entry.name.startswith(names):
            for path in [entry, *entry.rglob("*")]:
                st = path.stat()
                found[str(path.relative_to(sp))] = (st.st_ino, st.st_mtime_ns)
    return found


def test_installs_and_leaves_other_packages_untouched(
    target: PythonEnv, backend: Backend, wheels: Callable[[StandIn], Path]
) -> None:
    unrelated_before = file_identities(target, ("tdunrelated",))
    assert unrelated_before
    log = io.StringIO()
    messages: list[str] = []
    backend.preflight(target)

    backend.install(
        target, [wheels(TORCH_NEW)], index_url=None, log=log, timeout=180, progress=messages.append
    )

    assert installed(target, "torch") == "2.15.0+cpu"
    assert file_identities(target, ("tdunrelated",)) == unrelated_before
    assert messages[0] == f"Installing torch with {backend.name}…"
    assert any("2.15.0" in m for m in messages), messages
    text = log.getvalue()
    assert text.startswith("$ ")
    if backend.name == "pip" and not target.has_pip:
        assert f"--python {target.python}" in text
        assert not (target.site_packages[0] / "pip").exists()  # still no pip in it
    if backend.name == "uv":
        assert "--no-config" in text


def test_the_same_version_is_reinstalled(
    target: PythonEnv, backend: Backend, wheels: Callable[[StandIn], Path]
) -> None:
    repaired = StandIn("torch", "2.7.1+cu128", cuda="12.8", files={"torch/repaired.py": "OK = True\n"})
    backend.install(target, [wheels(repaired)], index_url=None, log=io.StringIO(), timeout=180, progress=None)
    assert (target.site_packages[0] / "torch" / "repaired.py").is_file()


def test_a_corrupt_wheel_fails_with_a_readable_line(
    target: PythonEnv, backend: Backend, wheels: Callable[[StandIn], Path], tmp_path: Path
) -> None:
    good = wheels(TORCH_NEW)
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    with pytest.raises(InstallFailedError) as info:
        backend.install(target, [bad], index_url=None, log=io.StringIO(), timeout=180, progress=None)

    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{backend.name} could not install torch: ")
    expected = "central directory" if backend.name == "uv" else "is invalid"
    assert expected in info.value.line, info.value.line
    assert installed(target, "torch") == "2.7.1+cu128"  # it stopped before touching the old one


@pytest.fixture
def dep_index(tmp_path: Path) -> Iterator[tuple[IndexServer, Path]]:
    root = tmp_path / "index"
    (wheel,) = publish(root, [StandIn("tddep", "1.0")], "deps")
    with IndexServer(root) as server:
        yield server, wheel


def test_dependencies_come_from_the_given_index(
    target: PythonEnv,
    backend: Backend,
    wheels: Callable[[StandIn], Path],
    dep_index: tuple[IndexServer, Path],
) -> None:
    server, _ = dep_index
    torch = wheels(StandIn("torch", "2.15.0+cpu", requires=["tddep==1.0"]))
    backend.install(
        target, [torch], index_url=server.index_url("deps"), log=io.StringIO(), timeout=180, progress=None
    )
    assert installed(target, "torch") == "2.15.0+cpu"
    assert installed(target, "tddep") == "1.0"


def test_find_links_and_constraints_from_the_machine_do_not_leak(
    target: PythonEnv,
    backend: Backend,
    wheels: Callable[[StandIn], Path],
    dep_index: tuple[IndexServer, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, dep_wheel = dep_index
    constraints = tmp_path / "c.txt"
    constraints.write_text("torch<=1.0\n")
    for var in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
        monkeypatch.setenv(var, str(dep_wheel.parent))
    for var in ("PIP_CONSTRAINT", "UV_CONSTRAINT"):
        monkeypatch.setenv(var, str(constraints))
    torch = wheels(StandIn("torch", "2.15.0+cpu", requires=["tddep==1.0"]))

    with pytest.raises(InstallFailedError) as info:
        backend.install(target, [torch], index_url=None, log=io.StringIO(), timeout=180, progress=None)

    # The dependency sits in the find-links folder; it is only missing because that was ignored.
    assert "tddep" in info.value.line, info.value.line
    assert installed(target, "tddep") is None


@pytest.mark.skipif(not GLOBAL_PIP_CONF.exists(), reason="needs this machine's global pip config")
def test_control_the_machine_pip_config_would_have_refused_the_new_torch(
    tmp_path: Path, wheels: Callable[[StandIn], Path]
) -> None:
    """Shows the tests above can fail: plain pip here honours the global torch<=2.14.1 cap."""
    env = make_venv(tmp_path / "ctl", seed_pip=True)
    done = proc.run(
        [env.python, "-m", "pip", "install", "--isolated", "--no-index", "--dry-run", wheels(TORCH_NEW)],
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PIP_CONFIG_FILE"},
    )
    assert not done.ok
    assert "torch<=2.14.1" in done.stdout + done.stderr


def test_a_hung_install_is_killed_at_the_timeout(
    target: PythonEnv,
    backend: Backend,
    wheels: Callable[[StandIn], Path],
    dep_index: tuple[IndexServer, Path],
) -> None:
    server, _ = dep_index
    server.set(delay=60.0)
    torch = wheels(StandIn("torch", "2.15.0+cpu", requires=["tddep==1.0"]))
    began = time.monotonic()

    with pytest.raises(InstallFailedError, match="did not finish installing torch within 2 s"):
        backend.install(
            target, [torch], index_url=server.index_url("deps"), log=io.StringIO(), timeout=2, progress=None
        )

    assert time.monotonic() - began < 30
    time.sleep(0.3)
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if str(torch) in (p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == []
    assert sys.executable  # the test process itself survived
