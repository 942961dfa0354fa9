"""The tray's reinstall and benchmark jobs: our real CLI as a child process, cancelled the way the
tray's "Cancel" does it (closing the child's stdin), with the environment proven byte for byte."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv, tree_digest
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import OLD_DRIVER, family
from torchdoctor.agent.tray.jobs import JobRequest, JobRunner
from torchdoctor.agent.tray.menu import JobKind
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.facts.knowledge import load_knowledge

pytestmark = pytest.mark.slow


def torch_version(root: Path) -> str | None:
    from tests.support.envs import venv_env

    reading = read_build(venv_env(root), load_knowledge(Path("/nonexistent")))
    return reading.build.version if reading else None


def test_a_reinstall_job_installs_the_plan_and_reports_progress(tmp_path: Path) -> None:
    root = tmp_path / "index"
    publish(root, family("cu118"), "cu118")
    env = make_venv(tmp_path / "proj" / ".venv")
    install_standins(env, family("cu128"))
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(OLD_DRIVER))
    progress: list[str] = []
    with IndexServer(root) as index:
        request = JobRequest(JobKind.REINSTALL, str(env.root), "torch 2.7.1+cu118", hw, index.url)
        outcome = JobRunner(request, on_progress=progress.append).run()
    assert outcome.ok, outcome
    assert outcome.title == "torch 2.7.1+cu118 installed and verified"
    assert outcome.body == "proj/.venv: verified; not benchmarked, as the hardware was read from a file"
    assert torch_version(env.root) == "2.7.1+cu118"
    assert any(p.startswith("Downloading torch-2.7.1+cu118") for p in progress)
    assert any(p.startswith("Installing with") for p in progress)


def test_a_refused_reinstall_says_why_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "index"
    (root / "cu118").mkdir(parents=True)  # the index has nothing that fits
    env = make_venv(tmp_path / "other")
    install_standins(env, family("cu128"))
    before = tree_digest(env.root)
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(OLD_DRIVER))
    with IndexServer(root) as index:
        request = JobRequest(JobKind.REINSTALL, str(env.root), "torch 2.7.1+cu118", hw, index.url)
        outcome = JobRunner(request, on_progress=lambda _p: None).run()
    assert not outcome.ok and not outcome.cancelled and outcome.exit_code == 1
    assert outcome.title == "Reinstall failed; other is unchanged"
    assert outcome.body and "Traceback" not in outcome.body
    assert tree_digest(env.root) == before


def test_cancel_during_the_install_restores_the_environment_exactly(tmp_path: Path) -> None:
    root = tmp_path / "index"
    marker = tmp_path / "importing"
    hang = f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(120)\n"
    publish(root, family("cu118", files={"torch/__init__.py": hang}), "cu118")
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    before = tree_digest(env.root)
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(OLD_DRIVER))
    with IndexServer(root) as index:
        runner = JobRunner(
            JobRequest(JobKind.REINSTALL, str(env.root), "torch 2.7.1+cu118", hw, index.url),
            on_progress=lambda _p: None,
        )
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(runner.run()))
        started = time.monotonic()
        worker.start()
        while not marker.exists():  # the new build is installed and being verified: mid-fix
            assert worker.is_alive() and time.monotonic() - started < 90
            time.sleep(0.05)
        runner.cancel()
        worker.join(90)
    assert not worker.is_alive()
    (outcome,) = result
    assert outcome.cancelled and not outcome.ok and outcome.exit_code == 1  # type: ignore[attr-defined]
    assert outcome.title == "Reinstall cancelled"  # type: ignore[attr-defined]
    assert tree_digest(env.root) == before
    assert torch_version(env.root) == "2.7.1+cu128"


def test_a_bench_job_of_an_environment_without_a_working_torch_fails_readably(tmp_path: Path) -> None:
    env = make_venv(tmp_path / "other")
    install_standins(env, family("cpu"))  # a stand-in: torch imports, but cannot compute
    outcome = JobRunner(
        JobRequest(JobKind.BENCH, str(env.root), "torch 2.7.1+cpu"), on_progress=lambda _p: None
    ).run()
    assert not outcome.ok
    assert outcome.title == "Benchmark (on the CPU) failed: other"  # no GPU here: not called a GPU benchmark
    assert "torchvision is broken" in outcome.body
    assert outcome.body and "Traceback" not in outcome.body
