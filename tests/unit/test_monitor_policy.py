"""Events between two cycles, and what a person hears of them: table tests over cycle sequences."""

from __future__ import annotations

import dataclasses

import pytest

from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.events import Event, EventKind, diff
from torchdoctor.service.monitor.policy import Decision, decide
from torchdoctor.service.monitor.state import (
    EnvState,
    FindingState,
    GpuState,
    HardwareState,
    MonitorState,
    PlanState,
)

RTX = GpuState("NVIDIA GeForce RTX 4090", "8.9")
PLAN = PlanState("2.7.1+cu126", "cu126", "https://x/cu126", ("torch==2.7.1+cu126",), 2_000_000_000)


def hw(driver: str | None = "572.16", *gpus: GpuState) -> HardwareState:
    return HardwareState(driver, "12.8", gpus or (RTX,), "file")


def env(
    path: str,
    status: EnvStatus = EnvStatus.OK,
    torch: str | None = "2.7.1+cu128",
    plan: PlanState | None = None,
) -> EnvState:
    findings: tuple[FindingState, ...] = ()
    if status is EnvStatus.BROKEN:
        findings = (
            FindingState("driver-too-old", "error", f"torch {torch} needs a newer driver.", "fix it"),
        )
    elif status is EnvStatus.WARN:
        findings = (
            FindingState("driver-minor-compat", "warn", "runs through minor-version compatibility.", "x"),
        )
    return EnvState(path, f"{path}/bin/python", "3.12.0", "venv", torch, None, None, status, findings, plan)


def state(hardware: HardwareState, *envs: EnvState) -> MonitorState:
    return MonitorState("2026-12-01T10:00:00Z", hardware, envs)


def run(*states: MonitorState) -> list[Decision]:
    """Each cycle compared with the one before, as the monitor does."""
    out = []
    previous: MonitorState | None = None
    for new in states:
        out.append(decide(diff(previous, new), previous, new))
        previous = new
    return out


A, B, C, D = "/w/a/.venv", "/w/b/.venv", "/w/c/.venv", "/w/d/.venv"


def test_diff_names_every_kind_of_change() -> None:
    old = state(hw("566.36"), env(A), env(B, EnvStatus.BROKEN), env(C))
    new = state(
        hw("572.16", RTX, GpuState("NVIDIA GeForce RTX 5090", "12.0")),
        env(A, EnvStatus.BROKEN),
        env(B, EnvStatus.OK, torch="2.7.1+cu126"),
        env(D),
    )
    events = set(diff(old, new))
    assert events == {
        Event(EventKind.DRIVER_CHANGED, "driver", "566.36", "572.16"),
        Event(
            EventKind.GPU_ADDED, "NVIDIA GeForce RTX 5090 (sm_120)", None, "NVIDIA GeForce RTX 5090 (sm_120)"
        ),
        Event(EventKind.VERDICT_WORSENED, A, "ok", "broken"),
        Event(EventKind.TORCH_CHANGED, B, "2.7.1+cu128", "2.7.1+cu126"),
        Event(EventKind.VERDICT_IMPROVED, B, "broken", "ok"),
        Event(EventKind.ENV_APPEARED, D, None, "ok"),
        Event(EventKind.ENV_VANISHED, C, "ok", None),
    }


def test_two_identical_cycles_have_no_events() -> None:
    s = state(hw(), env(A, EnvStatus.BROKEN), env(B))
    assert diff(s, dataclasses.replace(s, checked_at="later")) == ()


def test_removing_one_of_two_identical_gpus_is_one_event() -> None:
    old, new = state(hw("572.16", RTX, RTX)), state(hw("572.16", RTX))
    assert diff(old, new) == (
        Event(
            EventKind.GPU_REMOVED, "NVIDIA GeForce RTX 4090 (sm_89)", "NVIDIA GeForce RTX 4090 (sm_89)", None
        ),
    )


def test_first_start_announces_only_what_is_broken_in_one_message() -> None:
    first = state(
        hw(), env(A, EnvStatus.BROKEN, plan=PLAN), env(B, EnvStatus.WARN), env(C), env(D, EnvStatus.BROKEN)
    )
    (decision,) = run(first)
    assert len(decision.toasts) == 1
    toast = decision.toasts[0]
    assert toast.title == "2 environments are broken on this machine"
    assert "a/.venv, d/.venv" in toast.body and "b/.venv" not in toast.body
    assert "reinstall" in toast.body  # a plan exists for one of them


def test_first_start_with_nothing_broken_is_silent() -> None:
    assert run(state(hw(), env(A), env(B, EnvStatus.WARN))) == [Decision()]


def test_a_driver_update_that_breaks_names_the_versions_and_the_count() -> None:
    before = state(hw("566.36"), env(A), env(B), env(C))
    after = state(hw("572.16"), env(A, EnvStatus.BROKEN, plan=PLAN), env(B, EnvStatus.BROKEN), env(C))
    _, decision = run(before, after)
    assert [t.title for t in decision.toasts] == [
        "NVIDIA driver 566.36 → 572.16: 2 environments no longer fit"
    ]
    assert decision.toasts[0].body.startswith("a/.venv, b/.venv.")
    assert decision.quiet == ()


def test_a_driver_update_that_breaks_nothing_is_a_quiet_line_not_a_toast() -> None:
    before = state(hw("566.36"), env(A), env(B, EnvStatus.BROKEN))
    after = state(hw("572.16"), env(A), env(B, EnvStatus.BROKEN))  # B was broken already: not news
    _, decision = run(before, after)
    assert decision.toasts == ()
    assert decision.quiet == ("NVIDIA driver 566.36 → 572.16; every environment still fits.",)


@pytest.mark.parametrize(
    ("cycles", "toasts_per_cycle"),
    [
        # broken stays broken: announced once, never every cycle
        ([(EnvStatus.OK,), (EnvStatus.BROKEN,), (EnvStatus.BROKEN,), (EnvStatus.BROKEN,)], [0, 1, 0, 0]),
        # broken, fixed, broken again: two separate changes, two toasts
        ([(EnvStatus.OK,), (EnvStatus.BROKEN,), (EnvStatus.OK,), (EnvStatus.BROKEN,)], [0, 1, 0, 1]),
        # a warning or an improvement stays quiet
        ([(EnvStatus.OK,), (EnvStatus.WARN,), (EnvStatus.OK,)], [0, 0, 0]),
        # warn -> broken is worse: heard
        ([(EnvStatus.WARN,), (EnvStatus.BROKEN,)], [0, 1]),
    ],
)
def test_once_per_change(cycles: list[tuple[EnvStatus]], toasts_per_cycle: list[int]) -> None:
    states = [state(hw(), env(A, status)) for (status,) in cycles]
    assert [len(d.toasts) for d in run(*states)] == toasts_per_cycle


def test_a_broken_environment_that_appears_later_is_announced_a_fine_one_is_not() -> None:
    decisions = run(
        state(hw(), env(A)),
        state(hw(), env(A), env(B)),
        state(hw(), env(A), env(B), env(C, EnvStatus.BROKEN)),
    )
    assert [len(d.toasts) for d in decisions] == [0, 0, 1]
    assert decisions[2].toasts[0].title == "New environment is broken: c/.venv"


def test_a_gpu_swap_that_breaks_is_named_like_a_driver_update() -> None:
    blackwell = GpuState("NVIDIA GeForce RTX 5090", "12.0")
    _, decision = run(
        state(hw("572.16", RTX), env(A)), state(hw("572.16", blackwell), env(A, EnvStatus.BROKEN))
    )
    (toast,) = decision.toasts
    assert toast.title.startswith(
        "GPU added: NVIDIA GeForce RTX 5090 (sm_120); GPU removed: NVIDIA GeForce RTX 4090"
    )
    assert toast.title.endswith("1 environment no longer fits")


def test_more_than_three_names_are_summarised() -> None:
    paths = [f"/w/p{i}/.venv" for i in range(5)]
    _, decision = run(
        state(hw("1"), *(env(p) for p in paths)), state(hw("2"), *(env(p, EnvStatus.BROKEN) for p in paths))
    )
    assert decision.toasts[0].body.startswith("p0/.venv, p1/.venv, p2/.venv and 2 more.")
