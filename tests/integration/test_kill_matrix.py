"""The SIGKILL matrix: a real `fix` killed at every named point of every phase, and the next run.

Each trial starts from the same environment (torch 2.7.1+cpu, torchvision, tdhelper 1.0 and a
`~orch` stash an earlier pip left), runs the real CLI `fix --yes --no-bench` against the real
local index, and SIGKILLs it at one point:
  - the points in `killpoints.POINTS` on a fix that succeeds (the new torch needs tdhelper>=2, so
    the installer upgrades a dependency) and on one that fails verification and restores;
  - from outside: the fix alone while its installer child is still running (the child finishes
    as an orphan), the fix and its installer together, the fix and its verification child.
Then "the next run" is the real `fix --env X` with no terminal and no --yes: it recovers, plans,
and stops at the question (exit 2). The environment must then be exactly as before the killed
fix (full digest: path, kind, size, mode, owner, sha256), or, for a kill after the fix committed
(its snapshot renamed away), exactly as a fix that was not killed leaves it. No pending snapshot,
no trash, no `.discarded` folder may remain.

Figures: `pytest tests/integration/test_kill_matrix.py -q -s` prints one line per trial and a
summary (points, seconds per trial).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.envs import install_standins, make_venv, venv_env
from tests.support.fulldigest import differences, full_digest
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.install.killpoints import ENV_VAR, POINTS
from torchdoctor.service.models import PythonEnv

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

HW = {"driver_version": "572.16", "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]}
# A kill at these points of a successful fix comes after its commit (the snapshot renamed away):
# the environment is then the planned one.
AFTER_COMMIT = frozenset({"discard-renamed"})
RESTORE_POINTS = (
    "restore-start",
    "restore-cleared",
    "restore-half-placed",
    "restore-placed",
    "restore-checked",
    "discard-start",
    "discard-renamed",
)
SUCCESS_POINTS = tuple(p for p in POINTS if not p.startswith("restore-"))


@dataclass(frozen=True)
class Trial:
    name: str
    index: str  # "good", "broken" or "hanging"
    point: str | None = None  # a kill point inside the fix
    outside: str | None = None  # "orphan-installer", "with-installer", "in-verify"


TRIALS = (
    *(Trial(f"success/{p}", "good", point=p) for p in SUCCESS_POINTS),
    *(Trial(f"failure/{p}", "broken", point=p) for p in RESTORE_POINTS),
    Trial("outside/orphan-installer", "good", outside="orphan-installer"),
    Trial("outside/with-installer", "good", outside="with-installer"),
    Trial("outside/in-verify", "hanging", outside="in-verify"),
)


def _family(variant: str, **torch: object) -> list[StandIn]:
    cuda = "12.8" if variant == "cu128" else None
    return [
        StandIn("torch", f"2.7.1+{variant}", cuda=cuda, requires=["tdhelper>=2"], **torch),  # type: ignore[arg-type]
        StandIn("torchvision", f"0.22.1+{variant}"),
    ]


@dataclass
class World:
    tmp: Path
    template: Path
    venv: Path
    hw: Path
    servers: dict[str, IndexServer]
    marker: Path  # the hanging build's import writes it


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("kill-matrix")
    marker = tmp / "importing"
    hanging_init = f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(300)\n"
    helpers = [StandIn("tdhelper", "1.0"), StandIn("tdhelper", "2.0")]
    roots = {
        "good": _family("cu128"),
        "broken": _family("cu128", import_error="DLL load failed while importing _C"),
        "hanging": _family("cu128", files={"torch/__init__.py": hanging_init}),
    }
    servers: dict[str, IndexServer] = {}
    for name, specs in roots.items():
        root = tmp / f"index-{name}"
        publish(root, [*specs, *helpers], "cu128")
        publish(root, _family("cpu"), "cpu")
        servers[name] = IndexServer(root).start()
    template = tmp / "template"
    env = make_venv(template)
    install_standins(env, [StandIn("torch", "2.7.1+cpu"), StandIn("torchvision", "0.22.1+cpu"),
                           StandIn("tdhelper", "1.0")])  # fmt: skip
    sp = env.site_packages[0]
    shutil.copytree(sp / "torch", sp / "~orch")  # a stash an earlier, killed pip left
    hw = tmp / "hw.json"
    hw.write_text(json.dumps(HW))
    try:
        yield World(tmp, template, tmp / "venv", hw, servers, marker)
    finally:
        for server in servers.values():
            server.stop()


def fresh_env(world: World) -> PythonEnv:
    """The template, copied to the one path every trial uses (so digests compare across trials)."""
    if world.venv.exists():
        shutil.rmtree(world.venv)
    shutil.copytree(world.template, world.venv, symlinks=True)
    return venv_env(world.venv)


def argv(world: World, server: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torchdoctor.agent", "fix", "--env", str(world.venv), "--hardware",
        str(world.hw), "--index-base", world.servers[server].url, "--no-bench", *extra,
    ]  # fmt: skip


def environ(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != ENV_VAR}, "NO_COLOR": "1", **extra}


def without_caches(digest: dict[str, tuple[object, ...]], root: Path) -> dict[str, tuple[object, ...]]:
    """For comparing with the planned state: bytecode carries its source's time, not content, and
    uv's `uv_cache.json` carries the cached wheel's timestamp (the wheel cache touches a wheel on
    reuse, so it is least recently used last); a RECORD is compared without that one line."""
    kept: dict[str, tuple[object, ...]] = {}
    for key, value in digest.items():
        if "__pycache__" in key or key.endswith(".dist-info/uv_cache.json"):
            continue
        if key.endswith(".dist-info/RECORD"):
            lines = (root / key).read_text(encoding="utf-8").splitlines()
            text = "\n".join(line for line in lines if "/uv_cache.json," not in line)
            kept[key] = (*value[:-1], hashlib.sha256(text.encode()).hexdigest())
            continue
        kept[key] = value
    return kept


def installer_child(fix: psutil.Process) -> psutil.Process | None:
    for child in fix.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if " install " in f" {line} " and "--dry-run" not in line:
            return child
    return None


def wait_until(
    condition: Callable[[], object], proc: subprocess.Popen[str], what: str, seconds: float = 120
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"fix ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"fix never reached {what}"
        time.sleep(0.01)


def kill_from_outside(world: World, trial: Trial) -> None:
    server = world.servers[trial.index]
    manifest_glob = world.venv / ".torchdoctor" / "rollback"
    proc = subprocess.Popen(argv(world, trial.index, "--yes", "--installer", "uv"), env=environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        if trial.outside == "in-verify":
            wait_until(world.marker.exists, proc, "verification")
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            # Once the snapshot exists, slow the index down: the installer then waits on it.
            wait_until(lambda: list(manifest_glob.glob("*/manifest.json")), proc, "the snapshot")
            server.set(delay=3.0)
            fix = psutil.Process(proc.pid)
            wait_until(lambda: installer_child(fix), proc, "the installer")
            child = installer_child(fix)
            assert child is not None
            if trial.outside == "orphan-installer":
                os.kill(proc.pid, signal.SIGKILL)  # only the fix: its installer runs on, orphaned
                proc.communicate(timeout=60)
                child.wait(timeout=120)  # it finishes its install; then the next run recovers
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        server.set(delay=0.0)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
        world.marker.unlink(missing_ok=True)


# The environment's own lock file stays by design: an OS lock on a file that is never deleted, so
# no race between deleting and locking it (docs/contract.md); it holds nothing once released.
_KEPT: frozenset[str] = frozenset({".torchdoctor/fix.lock"})


def leftovers(world: World) -> list[str]:
    base = world.venv / ".torchdoctor"
    if not base.exists():
        return []
    found = (p for p in base.rglob("*") if not p.is_dir() or any(p.iterdir()))
    names = sorted(p.relative_to(world.venv).as_posix() for p in found)
    return [n for n in names if n not in _KEPT or (world.venv / n).stat().st_size]


def test_a_fix_killed_at_any_point_is_recovered_exactly_by_the_next_run(
    world: World, td_dirs: dict[str, Path]
) -> None:
    # The planned state: what a fix that is not killed leaves.
    fresh_env(world)
    done = subprocess.run(argv(world, "good", "--yes"), env=environ(), capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    planned = without_caches(full_digest(world.venv), world.venv)

    covered = {t.point for t in TRIALS if t.point}
    assert covered >= set(POINTS), f"points without a trial: {set(POINTS) - covered}"
    problems: list[str] = []
    seconds: list[float] = []
    for trial in TRIALS:
        started = time.monotonic()
        fresh_env(world)
        before = full_digest(world.venv)
        if trial.point is not None:
            killed = subprocess.run(argv(world, trial.index, "--yes"), env=environ(**{ENV_VAR: trial.point}),
                                    capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
            if killed.returncode != -signal.SIGKILL:
                problems.append(
                    f"{trial.name}: not killed (exit {killed.returncode}): {killed.stderr[-300:]}"
                )
                continue
        else:
            kill_from_outside(world, trial)
        # The next run: recovers, plans, and stops at the question it cannot ask (no terminal).
        nxt = subprocess.run(argv(world, "good"), env=environ(), input="", capture_output=True, text=True,
                             timeout=300, check=False)  # fmt: skip
        after = full_digest(world.venv)
        expected_planned = trial.point in AFTER_COMMIT and trial.index == "good"
        if nxt.returncode != 2 and not (expected_planned and nxt.returncode == 0):
            problems.append(f"{trial.name}: next run exit {nxt.returncode}: {nxt.stderr[-300:]}")
        diff = (
            differences(planned, without_caches(after, world.venv))
            if expected_planned
            else differences(before, after)
        )
        if diff:
            problems.append(f"{trial.name}: {len(diff)} differences, e.g. {diff[:3]}")
        if leftovers(world) or any((td_dirs["state"] / "rollback").rglob("manifest.json")):
            problems.append(f"{trial.name}: left {leftovers(world)}")
        seconds.append(time.monotonic() - started)
        print(f"kill-matrix {trial.name}: {seconds[-1]:.1f} s, "
              f"{'planned' if expected_planned else 'as before'}, {'ok' if not diff else 'DIFFERENT'}")  # fmt: skip
    print(
        f"kill-matrix: {len(TRIALS)} trials, {sum(1 for t in TRIALS if t.point)} at named points "
        f"({len(covered)} distinct) and {sum(1 for t in TRIALS if t.outside)} killed from outside; "
        f"{sum(seconds) / max(len(seconds), 1):.1f} s per trial, {sum(seconds):.0f} s in all"
    )
    assert problems == []
