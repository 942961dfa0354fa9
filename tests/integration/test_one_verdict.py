"""One verdict, one voice: `check`, `plan` and `fix` agree on the same venv, hardware and index.

For each stand-in case the real CLI runs `check --json`, then `plan --json`, then
`fix --yes --no-bench`. Broken or warn means the plan changes something and fix repairs it (check
says ok afterwards), or all three name the same reason fix refuses for; ok or info means the plan
changes nothing. A second test runs every hand command `check` prints, as printed (only the index
URL is pointed at the local index: `check` has no `--index-base`), and shows that it leaves the
environment in better shape.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import install_standins, make_venv, uv_bin
from tests.support.index_server import IndexServer, publish, torch_family
from tests.support.scenarios import GPU as RTX_4090_GPUS
from tests.support.scenarios import NEW_DRIVER, OLD_DRIVER
from tests.support.standin import StandIn
from torchdoctor.service.install.installers import installer_environ
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

RTX_5090_GPUS = [{"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"}]
HW_5090 = {"driver_version": "572.16", "cuda_driver_version": "12.8", "gpus": RTX_5090_GPUS}
# CUDA 12.4's own driver: cu126/cu128 run through minor-version compatibility, cu118 fits fully.
HW_4090_550 = {"driver_version": "550.54.14", "cuda_driver_version": "12.4", "gpus": RTX_4090_GPUS}
# CUDA 12.6's driver on an RTX 5090: only cu128 covers sm_120, and only through compatibility.
HW_5090_560 = {"driver_version": "560.35.05", "cuda_driver_version": "12.6", "gpus": RTX_5090_GPUS}


def _build(variant: str, torchvision: str = "0.22.1") -> list[StandIn]:
    cuda = None if variant == "cpu" else f"{variant[2:4]}.{variant[4]}"
    return [
        StandIn("torch", f"2.7.1+{variant}", cuda=cuda),
        StandIn("torchvision", f"{torchvision}+{variant}"),
    ]


@dataclass(frozen=True)
class Case:
    name: str
    hardware: dict[str, Any]
    installed: list[StandIn]
    status: str  # what check says first
    codes: tuple[str, ...]
    after: str | None  # torch version fix installs; None: fix changes nothing
    conda: bool = False


CASES = [
    Case("cpu build on a GPU machine", NEW_DRIVER, _build("cpu"), "broken", ("cpu-build-with-gpu",), "2.7.1+cu128"),
    Case("cu118 on an RTX 5090", HW_5090, _build("cu118"), "broken", ("gpu-arch-unsupported",), "2.7.1+cu128"),
    Case("cu128 after a rollback to 11.8", OLD_DRIVER, _build("cu128"), "broken", ("driver-too-old",), "2.7.1+cu118"),
    Case(
        "torchvision from another release",
        NEW_DRIVER,
        _build("cu128", torchvision="0.21.0"),
        "broken",
        ("companion-mismatch",),
        "2.7.1+cu128",
    ),
    Case("conda-installed torch", NEW_DRIVER, _build("cpu"), "broken", ("cpu-build-with-gpu",), None, conda=True),
    Case(
        "minor-compat with a better build",
        HW_4090_550,
        _build("cu128"),
        "warn",
        ("driver-minor-compat",),
        "2.7.1+cu118",
    ),
    Case("minor-compat without a better build", HW_5090_560, _build("cu128"), "ok", ("driver-minor-compat",), None),
]  # fmt: skip


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("one-verdict-index")
    for variant in ("cpu", "cu118", "cu126", "cu128"):
        publish(root, torch_family(variant, torchaudio=None), variant)
    with IndexServer(root) as server:
        yield server


def _venv(tmp_path: Path, case: Case, *, seed_pip: bool = False) -> PythonEnv:
    env = make_venv(tmp_path / "my venv", seed_pip=seed_pip)  # a space: paths must be quoted
    install_standins(env, case.installed)
    if case.conda:
        meta = env.root / "conda-meta"
        meta.mkdir()
        (meta / "pytorch-2.7.1-py3.11_cpu_0.json").write_text(
            json.dumps({"name": "pytorch", "version": "2.7.1", "build": "py3.11_cpu_0"})
        )
        for info in env.site_packages[0].glob("torch-*.dist-info"):
            (info / "INSTALLER").write_text("conda\n")
    return env


def _cli(tmp_path: Path, hw: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(json.dumps(hw))
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *argv, "--hardware", str(hw_file)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=dict(os.environ, NO_COLOR="1"),
    )


def _check(tmp_path: Path, case: Case, env: PythonEnv, index_base: str | None = None) -> dict[str, Any]:
    extra = ("--index-base", index_base) if index_base else ()
    proc = _cli(tmp_path, case.hardware, "check", "--json", "--no-discover", "--env", str(env.root), *extra)
    assert proc.returncode in (0, 1), proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)["environments"][0]
    assert proc.returncode == (0 if doc["status"] == "ok" else 1)
    return doc


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_plan_and_fix_agree(tmp_path: Path, index: IndexServer, case: Case) -> None:
    env = _venv(tmp_path, case)
    root = str(env.root)
    checked = _check(tmp_path, case, env)
    assert checked["status"] == case.status
    assert tuple(f["code"] for f in checked["findings"]) == case.codes

    planned = _cli(tmp_path, case.hardware, "plan", "--json", "--env", root, "--index-base", index.url)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)

    fixed = _cli(
        tmp_path, case.hardware, "fix", "--yes", "--no-bench", "--env", root, "--index-base", index.url
    )
    recheck = _check(tmp_path, case, env)

    if case.conda:
        # All three say the same thing: fix replaces conda's torch only with --allow-conda-mix.
        (finding,) = checked["findings"]
        assert "--allow-conda-mix" in finding["fix"] and "conda" in finding["fix"]
        assert "pip install" not in finding["fix"]
        assert any("--allow-conda-mix" in n and "conda" in n for n in plan["notes"])
        assert fixed.returncode == 1 and "Traceback" not in fixed.stderr
        assert "--allow-conda-mix" in fixed.stderr and "conda" in fixed.stderr
        assert recheck == checked
        consented = _cli(
            tmp_path, case.hardware, "fix", "--yes", "--no-bench", "--allow-conda-mix",
            "--env", root, "--index-base", index.url,
        )  # fmt: skip
        assert consented.returncode == 0, consented.stderr
        assert _check(tmp_path, case, env)["status"] == "ok"
        return

    if case.status == "ok":
        assert plan["changes_nothing"] is True, plan
        assert all(f["severity"] == "info" for f in checked["findings"])
        assert all(f["fix"].startswith("nothing to do") for f in checked["findings"])
        assert all("torchdoctor fix" not in f["fix"] for f in checked["findings"])
        assert fixed.returncode == 0 and "Nothing to do" in fixed.stdout
        assert recheck == checked
        return

    assert plan["changes_nothing"] is False
    assert plan["requirements"][0] == f"torch=={case.after}"
    assert all(f"torchdoctor fix --env {shlex.quote(root)}" in f["fix"] for f in checked["findings"])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert recheck["status"] == "ok", recheck
    assert recheck["torch"]["version"] == case.after
    assert all(f["severity"] == "info" for f in recheck["findings"])


_HAND = re.compile(r"by hand: (.+?)(?:$|;)")


HAND_CASES = [(c, False) for c in CASES if c.after is not None] + [
    (next(c for c in CASES if c.name == "torchvision from another release"), True)
]


@pytest.mark.parametrize(
    ("case", "seed_pip"),
    HAND_CASES,
    ids=[f"{c.name}-{'pip' if pip else 'uv'}-venv" for c, pip in HAND_CASES],
)
def test_every_hand_command_works_as_printed(
    tmp_path: Path, index: IndexServer, case: Case, seed_pip: bool
) -> None:
    """A venv with pip is told `python -m pip install`; one made by uv without pip, `uv pip install`."""
    env = _venv(tmp_path, case, seed_pip=seed_pip)
    checked = _check(tmp_path, case, env, index.url)  # the hints name the index check was given
    commands = [m.group(1) for f in checked["findings"] if (m := _HAND.search(f["fix"]))]
    assert commands, checked["findings"]
    for command in commands:
        assert "==" in command and "--index-url" in command
        assert "torch==" in command and "PATH" not in command
        assert f"--index-url {index.url}/" in command
        argv = shlex.split(command)  # run exactly as printed
        assert argv[0] == (str(env.python) if seed_pip else "uv")
        tools = installer_environ()
        tools["PATH"] = f"{Path(uv_bin()).parent}{os.pathsep}{tools.get('PATH', '')}"
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, env=tools)
        assert done.returncode == 0, done.stdout + done.stderr
    after = _check(tmp_path, case, env)
    assert after["status"] == "ok", after
    assert after["torch"]["version"] == case.after
