"""The tray's words and menu as pure functions of what it knows (a `TrayView`).

Nothing here touches pystray, a thread or a file: the tray renders these items, and tests read
them without a display. Every sentence a person sees in the tray is made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from torchdoctor.agent.tray.status import TrayStatus
from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import EnvState, MonitorState, display_name

MAX_ENV_MENUS = 15  # more than this is a list nobody scans in a tray menu; the rest are in the details
TOOLTIP_MAX = 127  # Windows' NOTIFYICONDATA szTip holds 128 characters with the terminating NUL
LINE_MAX = 90  # a menu line longer than this is cut with an ellipsis


class ActionKind(StrEnum):
    CHECK_NOW = "check-now"
    REINSTALL = "reinstall"
    BENCH = "bench"
    DETAILS = "details"  # one environment's (env set) or all of them (env None)
    OPEN_FOLDER = "open-folder"
    CANCEL = "cancel"
    AUTOSTART = "autostart"  # toggles
    OPEN_LOG = "open-log"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    env: str | None = None


class JobKind(StrEnum):
    REINSTALL = "reinstall"
    BENCH = "bench"


@dataclass(frozen=True, slots=True)
class Job:
    """A long action the tray is running: what, where, and its latest progress line."""

    kind: JobKind
    env: str
    label: str  # "torch 2.7.1+cu128" for a reinstall
    progress: str = "starting"
    cancelling: bool = False


@dataclass(frozen=True, slots=True)
class TrayView:
    state: MonitorState | None  # None until the first check has finished
    checking: bool = False
    job: Job | None = None
    autostart: bool | None = None  # None: could not be read
    menu_supported: bool = True


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    action: Action | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not a check item
    default: bool = False
    submenu: tuple[Item, ...] | None = None

    @property
    def is_separator(self) -> bool:
        return self.text == SEPARATOR.text and self.action is None and self.submenu is None


SEPARATOR = Item("-", enabled=False)


def cut(text: str, limit: int = LINE_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") or value >= 10 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns at GB


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- the status -------------------------------------------------------------------------------


def _has_driver(state: MonitorState) -> bool:
    hw = state.hardware
    return hw is not None and (bool(hw.gpus) or hw.driver_version is not None)


def tray_status(view: TrayView) -> TrayStatus:
    if view.job is not None:
        return TrayStatus.WORKING
    state = view.state
    if view.checking or state is None:
        return TrayStatus.CHECKING
    if state.error is not None:
        return TrayStatus.ERROR
    statuses = {e.status for e in state.environments}
    if EnvStatus.BROKEN in statuses:
        return TrayStatus.BROKEN
    if EnvStatus.WARN in statuses:
        return TrayStatus.ATTENTION
    if not _has_driver(state):
        return TrayStatus.NO_DRIVER
    return TrayStatus.OK


def _counts(state: MonitorState) -> tuple[int, int, int]:
    broken = sum(e.status is EnvStatus.BROKEN for e in state.environments)
    warn = sum(e.status is EnvStatus.WARN for e in state.environments)
    return broken, warn, len(state.environments)


def summary(view: TrayView, limit: int = LINE_MAX) -> str:
    """The status line: one sentence on the whole machine."""
    state = view.state
    if state is None:
        return "Checking this machine's environments…"
    if state.error is not None:
        return cut(f"The last check failed: {state.error}", limit)
    broken, warn, total = _counts(state)
    if total == 0:
        return "No Python environments found"
    if total == 1 and (broken or warn):
        only = state.environments[0].name
        return f"{only} is broken on this machine" if broken else f"{only} needs attention"
    if broken:
        word = "is" if broken == 1 else "are"
        return f"{broken} of {_plural(total, 'environment')} {word} broken on this machine"
    if warn:
        return f"{warn} of {_plural(total, 'environment')} need{'s' if warn == 1 else ''} attention"
    if not _has_driver(state):
        return f"No NVIDIA driver found; {_plural(total, 'environment')} checked"
    return (
        f"All {_plural(total, 'environment')} fit this machine"
        if total > 1
        else "The environment fits this machine"
    )


def _driver_words(state: MonitorState | None) -> str | None:
    if state is None or state.hardware is None:
        return None
    hw = state.hardware
    if hw.driver_version is None:
        return None
    return f"NVIDIA {hw.driver_version}"


def job_line(job: Job) -> str:
    env = env_name(job.env)
    if job.cancelling:
        return f"Cancelling; restoring {env}…"
    doing = f"Reinstalling {job.label} in {env}" if job.kind is JobKind.REINSTALL else f"Benchmarking {env}"
    return f"{doing}: {job.progress}"


def tooltip(view: TrayView) -> str:
    """One line (Windows cuts tooltips at 127 characters)."""
    if view.job is not None:
        text = job_line(view.job)
    elif view.checking and view.state is not None:
        text = f"Checking… (last: {summary(view)})"
    else:
        text = summary(view, TOOLTIP_MAX)
        driver = _driver_words(view.state)
        if driver and view.state is not None and view.state.error is None:
            text += f" · {driver}"
        if view.state is not None and view.state.notes and view.state.error is None:
            text += f" · {view.state.notes[0]}"
    return cut(f"torchdoctor: {text}", TOOLTIP_MAX)


# --- environments -------------------------------------------------------------------------------


def env_name(path: str) -> str:
    return display_name(path)


_VERDICT = {
    EnvStatus.BROKEN: "broken",
    EnvStatus.WARN: "needs attention",
    EnvStatus.OK: "fits",
    EnvStatus.NO_TORCH: "no torch",
}


def verdict(env: EnvState) -> str:
    """The environment's verdict in words: its first problem, or that it fits."""
    problem = next((f for f in env.findings if f.severity in ("error", "warn")), None)
    if problem is not None:
        return problem.message
    if env.torch is None:
        return "torch is not installed here"
    return f"torch {env.torch} fits this machine"


def reinstall_label(env: EnvState) -> str | None:
    """ "Reinstall torch 2.7.1+cu128 (2.4 GB)": exactly what one click installs; None with no plan."""
    plan = env.plan
    if plan is None or plan.changes_nothing:
        return None
    size = f" ({human_bytes(plan.download_bytes)})" if plan.download_bytes else ""
    return f"Reinstall torch {plan.torch}{size}"


def env_menu(env: EnvState, *, busy: bool) -> Item:
    label = reinstall_label(env)
    items: list[Item] = [Item(cut(verdict(env)), enabled=False)]
    if label is not None:
        items.append(Item(label, Action(ActionKind.REINSTALL, env.path), enabled=not busy))
    elif env.status in (EnvStatus.BROKEN, EnvStatus.WARN):
        why = env.plan_problem or "no published build fits"
        items.append(Item(cut(f"No reinstall on offer: {why}"), enabled=False))
    items += [
        Item(
            "Run GPU benchmark",
            Action(ActionKind.BENCH, env.path),
            enabled=not busy and env.torch is not None,
        ),
        Item("Show details", Action(ActionKind.DETAILS, env.path)),
        Item("Open folder", Action(ActionKind.OPEN_FOLDER, env.path)),
    ]
    return Item(cut(f"{env.name}: {_VERDICT[env.status]}"), submenu=tuple(items))


def build_menu(view: TrayView) -> tuple[Item, ...]:
    state = view.state
    job = view.job
    busy = job is not None
    items: list[Item] = [Item(cut(summary(view)), enabled=False)]
    if job is not None:
        items.append(Item(cut(job_line(job)), enabled=False))
        items.append(Item("Cancel", Action(ActionKind.CANCEL), enabled=not job.cancelling))
    checking = view.checking or state is None
    items.append(
        Item(
            "Checking…" if checking else "Check now",
            Action(ActionKind.CHECK_NOW),
            enabled=not checking and not busy,
            default=True,
        )
    )
    if state is not None and state.environments:
        items.append(SEPARATOR)
        shown = state.environments[:MAX_ENV_MENUS]
        items += [env_menu(env, busy=busy) for env in shown]
        hidden = len(state.environments) - len(shown)
        if hidden > 0:
            items.append(Item(f"… {hidden} more", Action(ActionKind.DETAILS)))
    items += [
        SEPARATOR,
        Item("Show details", Action(ActionKind.DETAILS)),
        Item(
            "Start at login",
            Action(ActionKind.AUTOSTART),
            checked=bool(view.autostart),
            enabled=view.autostart is not None,
        ),
        Item("Open log", Action(ActionKind.OPEN_LOG)),
        Item("Quit" if not busy else "Cancel and quit", Action(ActionKind.QUIT)),
    ]
    return tuple(items)
