"""The monitor's state file: round trips, atomic writes, and files that cannot be trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import (
    SCHEMA_VERSION,
    EnvState,
    FindingState,
    GpuState,
    HardwareState,
    MonitorState,
    PlanState,
    load_state,
    save_state,
    state_file,
)

STATE = MonitorState(
    checked_at="2026-12-01T10:00:00Z",
    hardware=HardwareState("572.16", "12.8", (GpuState("NVIDIA GeForce RTX 5090", "12.0"),), "nvml"),
    environments=(
        EnvState(
            "/home/ana/proj/.venv",
            "/home/ana/proj/.venv/bin/python",
            "3.12.4",
            "venv",
            "2.5.1+cu118",
            "0.20.1+cu118",
            None,
            EnvStatus.BROKEN,
            (FindingState("gpu-arch-unsupported", "error", "no kernels for sm_120", "reinstall"),),
            PlanState("2.7.1+cu128", "cu128", "https://x/cu128", ("torch==2.7.1+cu128",), 2_400_000_000),
        ),
        EnvState("/opt/other", "/opt/other/bin/python", None, "system", None, None, None, EnvStatus.NO_TORCH),
    ),
    notes=("NVIDIA driver 566.36 → 572.16; every environment still fits.",),
)


def test_a_saved_state_reads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(STATE, path)
    loaded = load_state(path)
    assert loaded.problem is None
    assert loaded.state == STATE
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_the_default_file_lives_in_the_state_folder(td_dirs: dict[str, Path]) -> None:
    save_state(STATE)
    assert state_file().parent == td_dirs["state"]
    assert load_state().state == STATE


def test_no_file_is_a_first_start(tmp_path: Path) -> None:
    loaded = load_state(tmp_path / "missing.json")
    assert loaded.state is None and loaded.problem is None and loaded.set_aside is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        json.dumps({"schema_version": 1, "environments": [{"path": "/x"}]}),  # no status
        json.dumps({"schema_version": 1, "environments": [{"path": "/x", "python": "p", "status": "fine"}]}),
        json.dumps({"schema_version": "1"}),
        json.dumps({"schema_version": 0}),
    ],
)
def test_a_corrupt_file_is_set_aside_never_fatal(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    loaded = load_state(path)
    assert loaded.state is None
    assert loaded.set_aside is not None and loaded.set_aside.read_text() == content  # kept for a bug report
    assert not path.exists()
    assert "set aside" in (loaded.problem or "")
    save_state(STATE, path)  # and the next cycle rebuilds it
    assert load_state(path).state == STATE


def test_a_file_from_a_newer_torchdoctor_is_set_aside_by_name(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "whatever": True}))
    loaded = load_state(path)
    assert loaded.state is None and loaded.set_aside is not None
    assert f".v{SCHEMA_VERSION + 1}-" in loaded.set_aside.name
    assert "newer torchdoctor" in (loaded.problem or "")


def test_saving_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(STATE, path)
    inode = path.stat().st_ino
    save_state(MonitorState("2026-12-02T00:00:00Z", None), path)
    assert path.stat().st_ino != inode  # a new file renamed over the old, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_save_that_fails_midway_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    save_state(STATE, path)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_state(MonitorState(None, None), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert load_state(path).state == STATE


def test_environment_names_are_what_a_person_recognises() -> None:
    env = STATE.environments[0]
    assert env.name == "proj/.venv"
    assert STATE.environments[1].name == "other"
