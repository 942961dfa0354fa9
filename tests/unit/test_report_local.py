"""This machine's histories as the report reads them, each written by its real writer:
bench-history.jsonl by service/bench/history.append, monitor-state.json by save_state, tray.log by
the tray's own logging setup. Fix logs are written line for line as `fix` writes them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from torchdoctor.agent.report.local import driver_events, gather, parse_fix_log
from torchdoctor.agent.tray.logs import setup_logging
from torchdoctor.service.bench import history
from torchdoctor.service.bench.run import BenchCheck, BenchResult, PeakRef
from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import EnvState, GpuState, HardwareState, MonitorState, save_state

T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)

INSTALLED = """torchdoctor fix /home/ana/proj/.venv
plan: torch==2.7.1+cu128 torchvision==0.22.1+cu128 from https://download.pytorch.org/whl/cu128
reason: the RTX 5090 needs sm_120 kernels
installer: uv (found on PATH)
downloaded https://download.pytorch.org/whl/cu128/torch-2.7.1%2Bcu128-cp312-cp312-linux_x86_64.whl (sha256 ab12)
snapshot 20260301T040000Z-1: 5123 files, 5120 linked
verification: ok=True facts={'version': '2.7.1+cu128', 'cuda': '12.8'}
check: ok []
benchmark: passed=True reason=None
"""

RESTORED = """torchdoctor fix /home/ana/old/.venv
plan: torch==2.7.1+cu128 from https://download.pytorch.org/whl/cu128
reason: driver too old
installer: pip (uv not found)
snapshot 20260302T040000Z-1: 10 files, 10 linked
verification: ok=False facts={}
restored snapshot 20260302T040000Z-1 (10 files; removed [])
FAILED: the new build failed verification: import torch failed; torch 2.5.1+cu124 was restored exactly
"""

NOT_RESTORED = """torchdoctor fix /home/ana/bad/.venv
plan: torch==2.7.1+cu128 from https://download.pytorch.org/whl/cu128
FAILED: could not restore /home/ana/bad/.venv: permission denied
"""

KILLED = """torchdoctor fix /home/ana/killed/.venv
plan: torch==2.7.1+cu128 from https://download.pytorch.org/whl/cu128
snapshot 20260304T040000Z-1: 10 files, 10 linked
"""


def _result(passed: bool, fp16: float | None) -> BenchResult:
    figures = {"matmul_fp16_tflops": fp16, "matmul_fp32_tflops": 50.0} if fp16 is not None else {}
    return BenchResult(
        device="cuda:0",
        device_name="NVIDIA H100 80GB HBM3",
        torch_version="2.7.1+cu128",
        passed=passed,
        checks=(BenchCheck("matmul", passed, "ok" if passed else "no kernel image"),),
        figures=figures,
        seconds=3.0,
        reason=None if passed else "no kernel image is available for execution on the device",
        peak=PeakRef("H100 SXM5 80GB", "NV-H100-DS", "A", {"fp16": 989.5, "fp32": 67.0}),
    )


@pytest.fixture
def tray_log() -> Iterator[logging.Logger]:
    setup_logging()
    logger = logging.getLogger("torchdoctor.tray")
    yield logger
    root = logging.getLogger("torchdoctor")
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)


def test_parse_fix_log_tells_each_ending_apart() -> None:
    at = T0
    installed = parse_fix_log(INSTALLED, log="a.log", at=at)
    assert installed is not None
    assert installed.env == "/home/ana/proj/.venv"
    assert installed.installed == "torch==2.7.1+cu128 torchvision==0.22.1+cu128"
    assert (installed.outcome, installed.detail) == ("installed", None)
    restored = parse_fix_log(RESTORED, log="b.log", at=at)
    assert restored is not None
    assert restored.outcome == "failed, restored"
    assert restored.detail is not None
    assert "torch 2.5.1+cu124 was restored exactly" in restored.detail
    not_restored = parse_fix_log(NOT_RESTORED, log="c.log", at=at)
    assert not_restored is not None
    assert not_restored.outcome == "failed, NOT restored"
    killed = parse_fix_log(KILLED, log="d.log", at=at)
    assert killed is not None
    assert killed.outcome == "unfinished"
    assert parse_fix_log("crash report\n", log="e.log", at=at) is None


def test_driver_changes_are_read_from_the_trays_real_log_format(
    tray_log: logging.Logger, td_dirs: dict[str, Path]
) -> None:
    # The exact call agent/tray/app.py makes for every event.
    tray_log.info("event: %s %s: %s -> %s", "driver-changed", "driver", "566.03", "572.16")
    tray_log.info("event: %s %s: %s -> %s", "torch-changed", "/p/.venv", "2.5.1", "2.7.1")
    lines = (td_dirs["log"] / "tray.log").read_text(encoding="utf-8").splitlines()
    (event,) = driver_events(lines)
    assert (event.old, event.new) == ("566.03", "572.16")
    assert event.at is not None
    assert abs((datetime.now(UTC) - event.at).total_seconds()) < 3600


def test_gather_reads_every_history_and_writes_nothing(
    tray_log: logging.Logger, td_dirs: dict[str, Path]
) -> None:
    env = Path("/home/ana/proj/.venv")
    for day in range(3):
        history.append(env, _result(day != 1, 600.0 + day if day != 1 else None), at=T0 + timedelta(days=day))
    cpu_run = BenchResult("cpu", None, "2.13.0+cpu", True, (), {"matmul_fp32_gflops": 12.8, "h2d": 1.0}, 9.0)
    history.append(Path("/home/ana/other"), cpu_run, at=T0)
    save_state(
        MonitorState(
            "2026-03-04T05:00:00Z",
            HardwareState("572.16", "12.8", (GpuState("NVIDIA H100 80GB HBM3", "9.0"),), "nvml"),
            (
                EnvState(
                    str(env),
                    str(env / "bin/python"),
                    "3.12.4",
                    "venv",
                    "2.7.1+cu128",
                    None,
                    None,
                    EnvStatus.OK,
                ),
            ),
        )
    )
    tray_log.info("event: %s %s: %s -> %s", "driver-changed", "driver", "566.03", "572.16")
    logs = td_dirs["log"]
    (logs / "fix-20260301T040000Z-.venv.log").write_text(INSTALLED, encoding="utf-8")
    (logs / "fix-20260302T040000Z-.venv.log").write_text(RESTORED, encoding="utf-8")
    (logs / "fix-notastamp-x.log").write_text(INSTALLED, encoding="utf-8")  # not fix's name: not read
    before = sorted(p.name for p in td_dirs["state"].iterdir())

    local = gather()

    assert [s.env for s in local.bench] == ["/home/ana/other", str(env)]
    assert local.bench[0].points[0].figures == {"matmul_fp32_gflops": 12.8}  # a CPU run keeps its figure
    series = local.bench[1]
    assert [p.passed for p in series.points] == [True, False, True]
    assert series.points[0].figures == {"matmul_fp16_tflops": 600.0, "matmul_fp32_tflops": 50.0}
    assert series.points[0].peaks == {"matmul_fp16_tflops": 989.5, "matmul_fp32_tflops": 67.0}
    assert [(f.at, f.outcome) for f in local.fixes] == [
        (datetime(2026, 3, 1, 4, 0, tzinfo=UTC), "installed"),
        (datetime(2026, 3, 2, 4, 0, tzinfo=UTC), "failed, restored"),
    ]
    assert (local.driver_now, local.driver_checked_at) == ("572.16", "2026-03-04T05:00:00Z")
    assert [(d.old, d.new) for d in local.drivers] == [("566.03", "572.16")]
    assert local.notes == ()
    assert sorted(p.name for p in td_dirs["state"].iterdir()) == before


def test_a_corrupt_state_is_a_note_and_stays_where_it_is(td_dirs: dict[str, Path]) -> None:
    """monitor/state.load_state would rename it aside; the report only reads."""
    state = td_dirs["state"] / "monitor-state.json"
    state.write_text('{"schema_version": 1, "environments": 7', encoding="utf-8")
    future = gather()
    assert future.driver_now is None
    assert len(future.notes) == 1
    assert "could not be read" in future.notes[0]
    assert state.exists()
    state.write_text('{"schema_version": 5}', encoding="utf-8")
    assert "has schema_version 5, not 1" in gather().notes[0]


def test_a_machine_with_no_history_gathers_empty() -> None:
    local = gather()
    assert (local.bench, local.fixes, local.drivers, local.driver_now, local.notes) == ((), (), (), None, ())
