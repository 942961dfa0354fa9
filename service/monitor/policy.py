"""Who hears what: the notification policy. Pure: events and states in, messages out.

The rules, each one because a tray that cries wolf gets turned off:
  - once per change, never every cycle: only events (differences) are ever announced;
  - at the first start, only what is broken, in one message;
  - a driver or GPU change names what it broke ("NVIDIA driver 566.36 → 572.16: 2 environments
    no longer fit"); a change that broke nothing is a quiet tooltip line, not a toast;
  - an environment that becomes broken for another reason (someone pip-installed over it) or a
    new environment that arrives broken gets a toast; a warning or an improvement stays quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.events import Event, EventKind
from torchdoctor.service.monitor.state import EnvState, MonitorState

MAX_NAMES = 3  # environments named in one notification; more become "and N more"


@dataclass(frozen=True, slots=True)
class Toast:
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Decision:
    toasts: tuple[Toast, ...] = ()
    quiet: tuple[str, ...] = ()  # tooltip lines: worth knowing, not worth interrupting for


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _names(envs: Sequence[EnvState]) -> str:
    names = [e.name for e in envs[:MAX_NAMES]]
    more = len(envs) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _first_problem(env: EnvState) -> str:
    finding = next((f for f in env.findings if f.severity == "error"), None)
    return finding.message if finding is not None else f"{env.name} needs attention."


def _who_and_why(envs: Sequence[EnvState]) -> str:
    """One environment: its name and its problem. More: the names, then the first one's problem."""
    if len(envs) == 1:
        return f"{envs[0].name}: {_first_problem(envs[0])}"
    return f"{_names(envs)}. {envs[0].name}: {_first_problem(envs[0])}"


def _offer(envs: Sequence[EnvState]) -> str:
    if any(e.plan is not None and not e.plan.changes_nothing for e in envs):
        return "Right-click the torchdoctor icon to reinstall a build that fits."
    return "Right-click the torchdoctor icon for details."


def _hardware_headline(events: Sequence[Event]) -> str | None:
    parts: list[str] = []
    for event in events:
        if event.kind is EventKind.DRIVER_CHANGED:
            parts.append(f"NVIDIA driver {event.old or 'none'} → {event.new or 'none'}")
        elif event.kind is EventKind.GPU_ADDED:
            parts.append(f"GPU added: {event.subject}")
        elif event.kind is EventKind.GPU_REMOVED:
            parts.append(f"GPU removed: {event.subject}")
    return "; ".join(parts) or None


def decide(events: Sequence[Event], old: MonitorState | None, new: MonitorState) -> Decision:
    if old is None:
        return _first_start(new)
    by_path = {e.path: e for e in new.environments}
    worsened = [
        by_path[e.subject]
        for e in events
        if e.kind is EventKind.VERDICT_WORSENED and e.new == EnvStatus.BROKEN.value and e.subject in by_path
    ]
    arrived_broken = [
        by_path[e.subject]
        for e in events
        if e.kind is EventKind.ENV_APPEARED and e.new == EnvStatus.BROKEN.value and e.subject in by_path
    ]
    toasts: list[Toast] = []
    quiet: list[str] = []
    headline = _hardware_headline(events)
    if headline is not None:
        if worsened:
            toasts.append(
                Toast(
                    f"{headline}: {_plural(len(worsened), 'environment')} no longer "
                    + ("fits" if len(worsened) == 1 else "fit"),
                    f"{_who_and_why(worsened)} {_offer(worsened)}",
                )
            )
        else:
            still = "every environment still fits" if new.environments else "no environment is affected"
            quiet.append(f"{headline}; {still}.")
    elif worsened:
        # Not the hardware: the environment itself changed (a pip install over it, a new torch).
        toasts.append(
            Toast(
                f"{_names(worsened)}: torch no longer fits this machine",
                f"{_first_problem(worsened[0])} {_offer(worsened)}",
            )
        )
    if arrived_broken:
        toasts.append(
            Toast(
                f"New {'environment is' if len(arrived_broken) == 1 else 'environments are'} broken: "
                + _names(arrived_broken),
                f"{_first_problem(arrived_broken[0])} {_offer(arrived_broken)}",
            )
        )
    return Decision(tuple(toasts), tuple(quiet))


def _first_start(new: MonitorState) -> Decision:
    broken = [e for e in new.environments if e.status is EnvStatus.BROKEN]
    if not broken:
        return Decision()
    verb = "is" if len(broken) == 1 else "are"
    return Decision(
        (
            Toast(
                f"{_plural(len(broken), 'environment')} {verb} broken on this machine",
                f"{_who_and_why(broken)} {_offer(broken)}",
            ),
        )
    )
