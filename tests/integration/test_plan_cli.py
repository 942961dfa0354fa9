"""`torchdoctor plan` end to end: a real venv, a real local index, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

RTX_4090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
}
GTX_1080 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce GTX 1080", "compute_capability": "6.1"}],
}
RTX_5090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"}],
}
NO_GPU: dict[str, Any] = {"gpus": []}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("plan-index")
    for variant in ("cpu", "cu126", "cu128"):
        cuda = None if variant == "cpu" else f"{variant[2:4]}.{variant[4]}"
        publish(
            root,
            [
                StandIn("torch", f"2.7.1+{variant}", cuda=cuda),
                StandIn("torch", f"2.6.0+{variant}", cuda=cuda),
                # A wheel for another interpreter and OS: never chosen for this venv.
                StandIn("torch", f"2.8.0+{variant}", cuda=cuda, tag="cp39-cp39-win_amd64"),
                StandIn("torchvision", f"0.22.1+{variant}"),
                StandIn("torchvision", f"0.21.0+{variant}"),
            ],
            variant,
        )
    with IndexServer(root) as server:
        yield server


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> PythonEnv:
    env = make_venv(tmp_path_factory.mktemp("plan-env") / "venv")
    install_standins(env, [StandIn("torch", "2.7.1+cpu"), StandIn("torchvision", "0.22.1+cpu")])
    return env


def plan(
    tmp_path: Path, hw: dict[str, Any], env: PythonEnv, base: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(json.dumps(hw))
    argv = [
        sys.executable,
        "-m",
        "torchdoctor.agent",
        "plan",
        "--env",
        str(env.root),
        "--hardware",
        str(hw_file),
    ]
    argv += ["--index-base", base, *extra]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ, NO_COLOR="1")
    )


def test_a_cpu_build_on_an_rtx_plans_the_cuda_build_of_the_same_release(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    proc = plan(tmp_path, RTX_4090, venv, index.url, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["environment"] == str(venv.root)
    assert doc["variant"] == "cu128"
    assert doc["index_url"] == f"{index.url}/cu128"
    assert doc["requirements"] == ["torch==2.7.1+cu128", "torchvision==0.22.1+cu128"]
    assert doc["current"] == "2.7.1+cpu"
    assert "keeps torch 2.7.1" in doc["reason"]
    assert all(f["sha256"] and len(f["sha256"]) == 64 for f in doc["files"])


def test_pascal_gets_cu126(tmp_path: Path, index: IndexServer, venv: PythonEnv) -> None:
    doc = json.loads(plan(tmp_path, GTX_1080, venv, index.url, "--json").stdout)
    assert doc["requirements"] == ["torch==2.7.1+cu126", "torchvision==0.22.1+cu126"]


def test_no_gpu_plans_the_cpu_build(tmp_path: Path, index: IndexServer, venv: PythonEnv) -> None:
    doc = json.loads(plan(tmp_path, NO_GPU, venv, index.url, "--json").stdout)
    assert doc["variant"] == "cpu"
    assert doc["requirements"] == ["torch==2.7.1+cpu", "torchvision==0.22.1+cpu"]


def test_nothing_fits_is_refused_with_exit_1_and_a_reason(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    # The local index has no cu128 build of a release that covers sm_120 ... except 2.7.1 cu128 does.
    # So hide cu128 by pointing at an index root without it.
    root = tmp_path / "only-cu126"
    publish(root, [StandIn("torch", "2.7.1+cu126", cuda="12.6")], "cu126")
    with IndexServer(root) as small:
        proc = plan(tmp_path, RTX_5090, venv, small.url, "--json")
        text = plan(tmp_path, RTX_5090, venv, small.url)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["refused"] is True and doc["requirements"] == []
    assert "RTX 5090" in doc["reason"]
    assert text.returncode == 1
    assert "Traceback" not in text.stderr
    assert text.stderr.startswith("torchdoctor: no published build of torch fits")
    # The CPU build is named as the user's choice, never picked: pinned, from the index plan was given.
    assert f"torch==2.7.1+cpu torchvision==0.22.1+cpu --index-url {small.url}/cpu" in text.stderr


def test_the_readable_plan(tmp_path: Path, index: IndexServer, venv: PythonEnv) -> None:
    proc = plan(tmp_path, RTX_4090, venv, index.url)
    assert proc.returncode == 0
    assert f"Plan for {venv.root}" in proc.stdout
    assert "torch: 2.7.1+cpu -> 2.7.1+cu128" in proc.stdout
    assert "torch-2.7.1+cu128-py3-none-any.whl" in proc.stdout


def test_a_plain_http_index_elsewhere_is_bad_input(tmp_path: Path, venv: PythonEnv) -> None:
    proc = plan(tmp_path, RTX_4090, venv, "http://example.com/whl")
    assert proc.returncode == 2
    assert "https" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_index_is_one_clear_line(tmp_path: Path, venv: PythonEnv) -> None:
    server = IndexServer(tmp_path / "gone").start()
    url = server.url
    server.stop()
    proc = plan(tmp_path, RTX_4090, venv, url)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("torchdoctor: ") and url in first


def test_json_consumers_get_a_document_even_when_the_index_is_gone(tmp_path: Path, venv: PythonEnv) -> None:
    server = IndexServer(tmp_path / "gone").start()
    url = server.url
    server.stop()
    proc = plan(tmp_path, RTX_4090, venv, url, "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["error"] == "index-unreachable" and doc["refused"] is False
    assert doc["environment"] == str(venv.root)


def test_the_environment_is_named_by_its_root_even_when_given_its_python(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(RTX_5090))
    root = tmp_path / "only-cu126"
    publish(root, [StandIn("torch", "2.7.1+cu126", cuda="12.6")], "cu126")
    with IndexServer(root) as small:
        argv = [sys.executable, "-m", "torchdoctor.agent", "plan", "--json", "--env", str(venv.python)]
        proc = subprocess.run(
            [*argv, "--hardware", str(hw), "--index-base", small.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["environment"] == str(venv.root)


def test_plan_and_fix_agree_that_a_mismatched_companion_is_a_change(
    tmp_path: Path, index: IndexServer
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(
        env, [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.21.0+cu128")]
    )
    doc = json.loads(plan(tmp_path, RTX_4090, env, index.url, "--json").stdout)
    assert doc["requirements"] == ["torch==2.7.1+cu128", "torchvision==0.22.1+cu128"]
    assert doc["changes_nothing"] is False


TOKEN = "tk9Fz2QmX7pLw4Rv8Ns1"  # noqa: S105 - not a secret: a stand-in for a private index's token, as some mirrors put it in the path


@pytest.fixture(scope="module")
def token_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("token-index")
    for variant in ("cpu", "cu126", "cu128"):
        cuda = None if variant == "cpu" else f"{variant[2:4]}.{variant[4]}"
        publish(root, [StandIn("torch", f"2.7.1+{variant}", cuda=cuda)], variant)
    with IndexServer(root) as server:
        server.knobs.prefix = TOKEN
        yield server


def test_a_token_in_the_index_path_is_used_but_never_shown(
    tmp_path: Path, token_index: IndexServer, venv: PythonEnv
) -> None:
    base = f"{token_index.url}/{TOKEN}"
    shown = plan(tmp_path, RTX_4090, venv, base)
    assert shown.returncode == 0, shown.stderr
    assert "2.7.1+cu128" in shown.stdout  # the pages behind the token were read
    doc = plan(tmp_path, RTX_4090, venv, base, "--json")
    assert json.loads(doc.stdout)["index_url"] == f"{token_index.url}/***/cu128"
    hw_file = tmp_path / "hw.json"
    check = subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "check", "--no-discover", "--env", str(venv.root),
         "--hardware", str(hw_file), "--index-base", base],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ, NO_COLOR="1"),
    )  # fmt: skip
    assert check.returncode == 1, check.stderr
    assert "--index-url" in check.stdout  # the hand-run pip command is there, with the token hidden
    for out in (shown, doc, check):
        assert TOKEN not in out.stdout + out.stderr
