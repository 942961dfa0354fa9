"""The plain-text details report that "Show details" opens."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchdoctor.agent.tray import opener
from torchdoctor.agent.tray.details import render_details, write_details
from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import (
    EnvState,
    FindingState,
    GpuState,
    HardwareState,
    MonitorState,
    PlanState,
)

STATE = MonitorState(
    "2026-12-01T10:00:00Z",
    HardwareState("572.16", "12.8", (GpuState("NVIDIA GeForce RTX 5090", "12.0"),), "nvml"),
    (
        EnvState("/w/a/.venv", "/w/a/.venv/bin/python", "3.12.4", "venv", "2.7.1+cu128", None, None, EnvStatus.OK),
        EnvState(
            "/w/b/.venv", "/w/b/.venv/bin/python", "3.11.9", "venv", "2.5.1+cu118", "0.20.1+cu118", None,
            EnvStatus.BROKEN,
            (FindingState("gpu-arch-unsupported", "error", "No kernels for sm_120.", "torchdoctor fix --env /w/b/.venv"),),
            PlanState("2.7.1+cu128", "cu128", "https://download.pytorch.org/whl/cu128",
                      ("torch==2.7.1+cu128", "torchvision==0.22.1+cu128"), 2_431_000_000),
        ),
    ),
)  # fmt: skip


def test_the_details_say_everything_the_menu_abbreviates() -> None:
    text = render_details(STATE)
    assert "NVIDIA driver: 572.16, CUDA 12.8" in text
    assert "GPUs: NVIDIA GeForce RTX 5090 (compute capability 12.0) (from nvml)" in text
    assert "  torch 2.5.1+cu118, torchvision 0.20.1+cu118" in text
    assert "  error: gpu-arch-unsupported: No kernels for sm_120." in text
    assert "    fix: torchdoctor fix --env /w/b/.venv" in text
    assert (
        "  Reinstall installs torch==2.7.1+cu128 torchvision==0.22.1+cu128 from "
        "https://download.pytorch.org/whl/cu128, 2.4 GB to download"
    ) in text


def test_the_environment_asked_about_comes_first() -> None:
    text = render_details(STATE, focus="/w/b/.venv")
    assert text.index("/w/b/.venv  [broken]") < text.index("/w/a/.venv  [ok]")


def test_before_the_first_check_it_says_so(tmp_path: Path) -> None:
    path = write_details(tmp_path / "state", None)
    assert path.read_text() == "torchdoctor has not finished its first check yet.\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["details.txt"]


@pytest.mark.skipif(sys.platform == "win32", reason="xdg-open is the Linux opener")
@pytest.mark.parametrize(("script", "opened"), [("exit 3", False), ("exit 0", True), ("/bin/sleep 3", True)])
def test_an_opener_that_fails_fast_is_a_failure_one_still_running_is_a_viewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, opened: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "xdg-open"
    fake.write_text(f"#!/bin/sh\n{script}\n")  # xdg-open exits 3 when no program handles the file
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(opener, "OPENER_GRACE_S", 1.0)
    assert opener.open_path(tmp_path / "details.txt") is opened


def test_without_any_opener_it_is_a_failure_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert opener.open_path(tmp_path / "details.txt") is False
