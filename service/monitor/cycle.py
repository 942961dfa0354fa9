"""One check cycle, in-process: probe, discover, diagnose, plan the repairs, compare, remember.

In-process on purpose: starting our own CLI every 30 minutes would cost an interpreter start and
every import each time, and would hide our exceptions behind an exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchdoctor.service.config import load_settings
from torchdoctor.service.envs.discover import collect_environments, environment_from_path, environment_key
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.facts.knowledge import Knowledge, load_knowledge
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.install.download import remote_size
from torchdoctor.service.install.index import IndexClient
from torchdoctor.service.install.plan import inspect_target, make_plan
from torchdoctor.service.install.policy import Plan
from torchdoctor.service.logfiles import create_log
from torchdoctor.service.models import CheckReport, EnvReport, EnvStatus, Hardware, PythonEnv
from torchdoctor.service.monitor.events import Event, diff
from torchdoctor.service.monitor.policy import Decision, decide
from torchdoctor.service.monitor.state import (
    EnvState,
    FindingState,
    GpuState,
    HardwareState,
    MonitorState,
    PlanState,
    now_iso,
    save_state,
)
from torchdoctor.service.probe.hardware import resolve_hardware
from torchdoctor.service.rules.check import run_check

log = logging.getLogger("torchdoctor.monitor")


@dataclass(frozen=True, slots=True)
class CycleOptions:
    """What `torchdoctor tray` was started with; the hardware file is read again every cycle."""

    hardware_file: Path | None = None
    env_paths: tuple[Path, ...] = ()
    discover: bool = True
    index_base: str = DEFAULT_INDEX_BASE
    plan_repairs: bool = True  # ask the index what "Reinstall torch" would install


@dataclass(frozen=True, slots=True)
class CycleResult:
    state: MonitorState
    events: tuple[Event, ...]
    decision: Decision
    saved: bool  # False when the state folder could not be written (the state is still valid)


def hardware_state(hw: Hardware) -> HardwareState:
    return HardwareState(
        driver_version=hw.driver_version,
        cuda_driver_version=hw.cuda_driver_version,
        gpus=tuple(
            GpuState(g.name, str(g.compute_capability) if g.compute_capability else None) for g in hw.gpus
        ),
        source=hw.source.value,
    )


def plan_state(plan: Plan, size_of: Callable[[str], int | None] = remote_size) -> PlanState:
    """The plan as the state keeps it; sizes the index did not give are asked of the server."""
    sizes = [f.size if f.size is not None else size_of(f.url) for f in plan.files]
    return PlanState(
        torch=str(plan.torch.version),
        variant=plan.variant,
        index_url=plan.index_url,
        requirements=plan.requirements,
        download_bytes=None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None),
        changes_nothing=plan.changes_nothing,
    )


def env_state(report: EnvReport) -> EnvState:
    torch = report.torch
    return EnvState(
        path=environment_key(report.env),  # a folder, or a free-threaded build's interpreter
        python=str(report.env.python),
        python_version=report.env.python_version,
        kind=report.env.kind.value,
        torch=torch.version if torch else None,
        torchvision=torch.torchvision if torch else None,
        torchaudio=torch.torchaudio if torch else None,
        status=report.status,
        findings=tuple(
            FindingState(f.code.value, f.severity.value, f.message, f.fix) for f in report.findings
        ),
    )


def needs_plan(env: EnvState) -> bool:
    """A repair is offered where a finding says the build does not fit (errors and warnings)."""
    return env.status in (EnvStatus.BROKEN, EnvStatus.WARN) and env.torch is not None


PlanFn = Callable[[PythonEnv, Hardware, Knowledge], Plan]


def _planner(index_base: str) -> PlanFn:
    client = IndexClient(index_base)

    def plan(env: PythonEnv, hardware: Hardware, knowledge: Knowledge) -> Plan:
        target = inspect_target(env, knowledge)
        return make_plan(target, hardware, knowledge, client, index_base=index_base)

    return plan


def _with_plans(
    report: CheckReport,
    states: Sequence[EnvState],
    previous: MonitorState | None,
    knowledge: Knowledge,
    planner: PlanFn,
) -> list[EnvState]:
    """Plan each environment that needs one. A plan is reused while neither the environment's build
    nor the hardware changed: asking its interpreter and the index every cycle would cost CPU and
    network for the same answer."""
    same_hardware = previous is not None and previous.hardware == hardware_state(report.hardware)
    out: list[EnvState] = []
    for env_report, state in zip(report.environments, states, strict=True):
        if not needs_plan(state):
            out.append(state)
            continue
        old = previous.environment(state.path) if previous is not None else None
        if same_hardware and old is not None and old.torch == state.torch and old.plan is not None:
            out.append(dataclasses.replace(state, plan=old.plan))
            continue
        try:
            plan = planner(env_report.env, report.hardware, knowledge)
            out.append(dataclasses.replace(state, plan=plan_state(plan)))
        except TorchdoctorError as exc:
            out.append(dataclasses.replace(state, plan_problem=str(exc)))
        except Exception as exc:  # one environment's odd interpreter must not fail the cycle
            log.exception("planning for %s failed", state.path)
            out.append(dataclasses.replace(state, plan_problem=f"{type(exc).__name__}: {exc}"))
    return out


def check_machine(
    options: CycleOptions, previous: MonitorState | None, planner: PlanFn | None = None
) -> MonitorState:
    """The state of the machine now. Raises TorchdoctorError (or a bug) when the check itself fails."""
    knowledge = load_knowledge()
    settings = load_settings()
    hardware = resolve_hardware(options.hardware_file)
    notes: list[str] = []
    explicit: list[PythonEnv] = []
    for path in options.env_paths:
        try:
            explicit.append(environment_from_path(path))
        except TorchdoctorError as exc:
            # A tray started with --env keeps running when that folder is deleted: a note, not an error.
            notes.append(f"{path}: {exc}")
    others = collect_environments(settings, (), discover=options.discover)
    report = run_check(
        hardware,
        explicit,
        others.environments,
        knowledge,
        (*notes, *others.notes),
        index_base=options.index_base,
    )
    states = [env_state(r) for r in report.environments]
    if options.plan_repairs:
        states = _with_plans(report, states, previous, knowledge, planner or _planner(options.index_base))
    # Attention first: the menu and the tooltip read the list in this order.
    states.sort(key=lambda e: (-_attention(e.status), e.path))
    return MonitorState(
        checked_at=now_iso(),
        hardware=hardware_state(hardware),
        environments=tuple(states),
        notes=tuple(report.notes),
    )


def _attention(status: EnvStatus) -> int:
    return {EnvStatus.BROKEN: 2, EnvStatus.WARN: 1}.get(status, 0)


def _crash_log() -> str:
    """A bug of ours: the traceback in a file of its own, for the bug report."""
    try:
        path, fh = create_log("crash-check")
        with fh:
            fh.write(traceback.format_exc())
    except OSError:
        return "no crash log could be written"
    return str(path)


def run_cycle(
    options: CycleOptions,
    previous: MonitorState | None,
    *,
    state_path: Path | None = None,
    planner: PlanFn | None = None,
) -> CycleResult:
    """One cycle, never raising for a failed check: the failure becomes the state's `error`, the
    previous environments are kept (so the next good cycle compares with them), and the next cycle
    tries again."""
    try:
        state = check_machine(options, previous, planner)
    except Exception as exc:
        reason = (
            str(exc) if isinstance(exc, TorchdoctorError) else f"internal error: {type(exc).__name__}: {exc}"
        )
        if not isinstance(exc, TorchdoctorError):
            log.exception("the check failed")
            reason += f" (details: {_crash_log()})"
        else:
            log.warning("the check failed: %s", reason)
        base = previous or MonitorState(checked_at=None, hardware=None)
        state = dataclasses.replace(base, checked_at=now_iso(), error=reason)
    # A failed cycle is compared with nothing (it read no environments; they did not vanish), and a
    # state that never had a good cycle is no baseline: the next good cycle counts as the first.
    baseline = previous if previous is not None and previous.checked_at and previous.hardware else None
    events = diff(baseline, state) if state.error is None else ()
    decision = decide(events, baseline, state) if state.error is None else Decision()
    if decision.quiet:
        state = dataclasses.replace(state, notes=(*decision.quiet, *state.notes))
    saved = True
    try:
        save_state(state, state_path)
    except OSError as exc:
        saved = False
        log.warning("the state could not be saved (%s); changes may be announced again after a restart", exc)
    return CycleResult(state, events, decision, saved)
