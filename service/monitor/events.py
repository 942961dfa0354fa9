"""What changed between two check cycles, as events. Pure: two states in, a tuple out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import EnvState, GpuState, HardwareState, MonitorState


class EventKind(StrEnum):
    DRIVER_CHANGED = "driver-changed"
    GPU_ADDED = "gpu-added"
    GPU_REMOVED = "gpu-removed"
    ENV_APPEARED = "env-appeared"
    ENV_VANISHED = "env-vanished"
    TORCH_CHANGED = "torch-changed"
    VERDICT_WORSENED = "verdict-worsened"
    VERDICT_IMPROVED = "verdict-improved"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    subject: str  # an environment's path, a GPU's name, or "driver"
    old: str | None = None
    new: str | None = None


# no-torch is not worse than ok: an environment without torch has nothing to break.
_RANK = {EnvStatus.OK: 0, EnvStatus.NO_TORCH: 0, EnvStatus.WARN: 1, EnvStatus.BROKEN: 2}


def rank(status: EnvStatus) -> int:
    return _RANK[status]


def _gpu_label(gpu: GpuState) -> str:
    return (
        gpu.name
        if gpu.compute_capability is None
        else f"{gpu.name} (sm_{gpu.compute_capability.replace('.', '')})"
    )


def _hardware_events(old: HardwareState | None, new: HardwareState | None) -> list[Event]:
    if old is None or new is None:
        return []
    events: list[Event] = []
    if old.driver_version != new.driver_version and (old.driver_version or new.driver_version):
        events.append(Event(EventKind.DRIVER_CHANGED, "driver", old.driver_version, new.driver_version))
    old_gpus = [_gpu_label(g) for g in old.gpus]
    new_gpus = [_gpu_label(g) for g in new.gpus]
    remaining = list(old_gpus)
    for label in new_gpus:
        if label in remaining:
            remaining.remove(label)
        else:
            events.append(Event(EventKind.GPU_ADDED, label, None, label))
    events.extend(Event(EventKind.GPU_REMOVED, label, label, None) for label in remaining)
    return events


def _env_events(old: EnvState, new: EnvState) -> list[Event]:
    events: list[Event] = []
    if old.torch != new.torch:
        events.append(Event(EventKind.TORCH_CHANGED, new.path, old.torch, new.torch))
    if rank(new.status) > rank(old.status):
        events.append(Event(EventKind.VERDICT_WORSENED, new.path, old.status.value, new.status.value))
    elif rank(new.status) < rank(old.status):
        events.append(Event(EventKind.VERDICT_IMPROVED, new.path, old.status.value, new.status.value))
    return events


def diff(old: MonitorState | None, new: MonitorState) -> tuple[Event, ...]:
    """The changes from `old` to `new`; with no `old` (a first start) every environment appears."""
    events: list[Event] = []
    if old is not None:
        events.extend(_hardware_events(old.hardware, new.hardware))
    before = {e.path: e for e in old.environments} if old is not None else {}
    for env in new.environments:
        previous = before.pop(env.path, None)
        if previous is None:
            events.append(Event(EventKind.ENV_APPEARED, env.path, None, env.status.value))
        else:
            events.extend(_env_events(previous, env))
    events.extend(Event(EventKind.ENV_VANISHED, path, e.status.value, None) for path, e in before.items())
    return tuple(events)
