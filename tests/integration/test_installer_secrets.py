"""Index credentials reach real uv and pip through their environment, never their command line.

The index requires Basic auth; the installers fetch a dependency from it. A wrapper stands in
front of the real installer and records its own /proc/self/cmdline (what any user of the machine
can read) and the index variable it was given, then execs the real one.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envs import make_venv, uv_bin
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn, build_wheel
from torchdoctor.service import proc
from torchdoctor.service.install import urlsecrets
from torchdoctor.service.install.index import validate_index_base
from torchdoctor.service.install.installers import Backend, InstallFailedError, PipBackend, UvBackend
from torchdoctor.service.models import PythonEnv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc/<pid>/cmdline"),
]

SECRET = "s3cret-Tok3n"  # noqa: S105 - a made-up credential the test index demands
CLI = (sys.executable, "-m", "torchdoctor.agent")
WRAPPER = """#!{python}
import json, os, sys
with open({record!r}, "a") as fh:
    cmdline = open("/proc/self/cmdline", "rb").read().decode().split("\\0")
    seen = {{k: os.environ.get(k) for k in ("UV_DEFAULT_INDEX", "PIP_INDEX_URL", "PYTHONNOUSERSITE")}}
    fh.write(json.dumps({{"cmdline": cmdline, "env": seen}}) + "\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


@pytest.fixture(autouse=True)
def _no_credentials() -> Iterator[None]:
    urlsecrets.forget_all()
    yield
    urlsecrets.forget_all()


@pytest.fixture
def private_index(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    publish(root, [StandIn("tddep", "1.0")], "deps")
    with IndexServer(root) as server:
        server.set(auth=("ana", SECRET))
        yield server


def _wrapper(tmp_path: Path, real: str) -> tuple[str, Path]:
    record = tmp_path / "seen.jsonl"
    script = tmp_path / "wrapped-installer"
    script.write_text(WRAPPER.format(python=sys.executable, record=str(record), real=real))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), record


def _backend(kind: str, tmp_path: Path) -> tuple[Backend, Path]:
    if kind == "uv":
        path, record = _wrapper(tmp_path, uv_bin())
        return UvBackend(path), record
    path, record = _wrapper(tmp_path, sys.executable)
    return PipBackend(host_python=path), record  # the env has no pip: ours runs with --python


def _installed(env: PythonEnv, project: str) -> bool:
    code = f"import importlib.util as u; print(u.find_spec({project!r}) is not None)"
    return proc.run([env.python, "-I", "-c", code], timeout=60).stdout.strip() == "True"


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_credentials_go_through_the_environment_and_the_install_works(
    kind: str, tmp_path: Path, private_index: IndexServer
) -> None:
    env = make_venv(tmp_path / "venv")
    backend, record = _backend(kind, tmp_path)
    host = private_index.url.removeprefix("http://")
    index_url = validate_index_base(f"http://ana:{SECRET}@{host}") + "/deps"
    torch = build_wheel(StandIn("torch", "2.15.0+cpu", requires=["tddep==1.0"]), tmp_path / "wheels")
    log = io.StringIO()

    backend.install(env, [torch], index_url=index_url, log=log, timeout=300, progress=None)

    assert _installed(env, "tddep")  # fetched from the index that demands the credentials
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert runs
    for run in runs:
        assert not any(SECRET in arg for arg in run["cmdline"]), run["cmdline"]
        assert run["env"]["PYTHONNOUSERSITE"] == "1"
    variable = backend.index_variable
    assert any(run["env"][variable] == f"http://ana:{SECRET}@{host}/deps" for run in runs)
    if kind == "pip":
        assert all(run["cmdline"][2:4] == ["-s", "-m"] for run in runs)  # no user site, ever
    assert SECRET not in log.getvalue()


def test_without_credentials_the_same_install_fails(tmp_path: Path, private_index: IndexServer) -> None:
    """Shows the test above can fail: the dependency really needs the credentials."""
    env = make_venv(tmp_path / "venv")
    torch = build_wheel(StandIn("torch", "2.15.0+cpu", requires=["tddep==1.0"]), tmp_path / "wheels")
    with pytest.raises(InstallFailedError):
        UvBackend(uv_bin()).install(
            env,
            [torch],
            index_url=private_index.index_url("deps"),
            log=io.StringIO(),
            timeout=300,
            progress=None,
        )


def test_plan_with_credentials_shows_them_nowhere(tmp_path: Path, td_dirs: dict[str, Path]) -> None:
    root = tmp_path / "index"
    publish(root, [StandIn("torch", "2.7.1+cpu"), StandIn("torchvision", "0.22.1+cpu")], "cpu")
    env = make_venv(tmp_path / "venv")
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"gpus": []}))
    with IndexServer(root) as server:
        server.set(auth=("ana", SECRET))
        base = f"http://ana:{SECRET}@{server.url.removeprefix('http://')}"
        done = subprocess.run(
            [*CLI, "plan", "--env", str(env.root), "--hardware", str(hw), "--index-base", base, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=dict(os.environ, NO_COLOR="1"),
        )
        denied = [r for r in server.requests if r.served == "status:401"]
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["index_url"] == f"{server.url}/cpu"
    assert SECRET not in done.stdout + done.stderr
    assert not denied
    for folder in td_dirs.values():
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_a_child_torchdoctor_inherits_the_credentials_through_its_environment(tmp_path: Path) -> None:
    """What the tray does for its `fix`: the URL in argv has no credentials, the environment has."""
    root = tmp_path / "index"
    publish(root, [StandIn("torch", "2.7.1+cpu"), StandIn("torchvision", "0.22.1+cpu")], "cpu")
    env = make_venv(tmp_path / "venv")
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"gpus": []}))
    with IndexServer(root) as server:
        server.set(auth=("ana", SECRET))
        stripped = validate_index_base(f"http://ana:{SECRET}@{server.url.removeprefix('http://')}")
        argv = [*CLI, "plan", "--env", str(env.root), "--hardware", str(hw), "--index-base", stripped]
        assert not any(SECRET in a for a in argv)
        # First without (a refused page is never cached, so the second run asks again).
        alone = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        inherited = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=dict(os.environ, NO_COLOR="1") | urlsecrets.child_environ(),
        )
    assert inherited.returncode == 0, inherited.stderr
    assert SECRET not in inherited.stdout + inherited.stderr
    assert alone.returncode == 1 and "401" in alone.stderr  # the control: without them, refused
