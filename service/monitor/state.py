"""What the monitor remembers between check cycles, and how it is kept on disk.

The state file is the memory that makes "notify once per change" survive a restart or a reboot:
a driver update seen before the machine went down is not announced again at the next login. It
holds only what the next cycle compares and what the tray renders, in plain JSON.

A file that cannot be trusted (not JSON, wrong shape, written by a newer torchdoctor) is set aside
under a new name, never deleted and never fatal: the next cycle rebuilds the state, as at a first
start, and the set-aside copy is there for a bug report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from torchdoctor.service import paths
from torchdoctor.service.models import EnvStatus

SCHEMA_VERSION: Final = 1
STATE_FILE_NAME: Final = "monitor-state.json"


@dataclass(frozen=True, slots=True)
class GpuState:
    name: str
    compute_capability: str | None


@dataclass(frozen=True, slots=True)
class HardwareState:
    """The driver and GPUs as the last cycle saw them."""

    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[GpuState, ...]
    source: str


@dataclass(frozen=True, slots=True)
class FindingState:
    code: str
    severity: str
    message: str
    fix: str


@dataclass(frozen=True, slots=True)
class PlanState:
    """What "Reinstall torch …" would install: the plan's own words, and what it downloads."""

    torch: str  # "2.7.1+cu128"
    variant: str
    index_url: str
    requirements: tuple[str, ...]
    download_bytes: int | None  # None when the index does not say a wheel's size
    changes_nothing: bool = False


def display_name(path: str) -> str:
    """How a person recognises an environment in a menu: the project folder, not `.venv`; a
    free-threaded build's interpreter (its key when it shares a folder) as "folder (python3.13t)"."""
    p = Path(path)
    if _is_interpreter(p):
        return f"{display_name(str(env_folder(path)))} ({p.stem if p.suffix.lower() == '.exe' else p.name})"
    if p.name in (".venv", "venv", "env", ".env") and p.parent.name:
        return f"{p.parent.name}/{p.name}"
    return p.name or path


_FREE_THREADED_EXE: Final = re.compile(r"^python\d+\.\d+t(\.exe)?$", re.IGNORECASE)


def _is_interpreter(p: Path) -> bool:
    """Only a free-threaded interpreter is ever a key (discover.environment_key), never a folder."""
    return _FREE_THREADED_EXE.match(p.name) is not None


def env_folder(path: str) -> Path:
    """The folder of the environment an EnvState's `path` names: the path itself, or, for an
    interpreter, the prefix it lives in (`bin/` and `Scripts/` are not the environment)."""
    p = Path(path)
    if not _is_interpreter(p):
        return p
    return p.parent.parent if p.parent.name in ("bin", "Scripts") else p.parent


@dataclass(frozen=True, slots=True)
class EnvState:
    """One environment: its build, its verdict, and whether a repair is on offer."""

    path: str
    python: str
    python_version: str | None
    kind: str
    torch: str | None  # "2.5.1+cu124"; None where torch is absent or unreadable
    torchvision: str | None
    torchaudio: str | None
    status: EnvStatus
    findings: tuple[FindingState, ...] = ()
    plan: PlanState | None = None
    plan_problem: str | None = None  # why there is no plan (offline index, nothing fits)

    @property
    def name(self) -> str:
        return display_name(self.path)


@dataclass(frozen=True, slots=True)
class MonitorState:
    checked_at: str | None  # ISO 8601 UTC of the last finished cycle
    hardware: HardwareState | None
    environments: tuple[EnvState, ...] = ()
    error: str | None = None  # the last cycle's failure in one line; None when it succeeded
    notes: tuple[str, ...] = ()  # the tooltip's quiet lines, e.g. a driver update that broke nothing
    schema_version: int = SCHEMA_VERSION

    def environment(self, path: str) -> EnvState | None:
        return next((e for e in self.environments if e.path == path), None)


@dataclass(frozen=True, slots=True)
class Loaded:
    """The result of reading the state file: the state (None at a first start) and what was odd."""

    state: MonitorState | None
    set_aside: Path | None = None  # where an untrustworthy file was moved
    problem: str | None = None


def state_file() -> Path:
    return paths.state_dir() / STATE_FILE_NAME


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- JSON ---------------------------------------------------------------------------------------


def state_to_json(state: MonitorState) -> dict[str, object]:
    hw = state.hardware
    return {
        "schema_version": SCHEMA_VERSION,
        "checked_at": state.checked_at,
        "error": state.error,
        "notes": list(state.notes),
        "hardware": None
        if hw is None
        else {
            "driver_version": hw.driver_version,
            "cuda_driver_version": hw.cuda_driver_version,
            "source": hw.source,
            "gpus": [{"name": g.name, "compute_capability": g.compute_capability} for g in hw.gpus],
        },
        "environments": [_env_to_json(e) for e in state.environments],
    }


def _env_to_json(env: EnvState) -> dict[str, object]:
    plan = env.plan
    return {
        "path": env.path,
        "python": env.python,
        "python_version": env.python_version,
        "kind": env.kind,
        "torch": env.torch,
        "torchvision": env.torchvision,
        "torchaudio": env.torchaudio,
        "status": env.status.value,
        "findings": [
            {"code": f.code, "severity": f.severity, "message": f.message, "fix": f.fix} for f in env.findings
        ],
        "plan": None
        if plan is None
        else {
            "torch": plan.torch,
            "variant": plan.variant,
            "index_url": plan.index_url,
            "requirements": list(plan.requirements),
            "download_bytes": plan.download_bytes,
            "changes_nothing": plan.changes_nothing,
        },
        "plan_problem": env.plan_problem,
    }


class StateFormatError(ValueError):
    """The file is JSON but not a state this version understands."""


def _str(obj: dict[str, object], key: str, *, optional: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StateFormatError(f"{key!r} should be a string, not {value!r}")
    return value


def _req_str(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise StateFormatError(f"{key!r} should be a string, not {value!r}")
    return value


def _dict(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise StateFormatError(f"{where} should be an object")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise StateFormatError(f"{where} should be a list")
    return value


def state_from_json(obj: object) -> MonitorState:
    """Raises StateFormatError for anything that is not a version-1 state."""
    top = _dict(obj, "the state")
    hw_obj = top.get("hardware")
    hardware = None
    if hw_obj is not None:
        hw = _dict(hw_obj, "hardware")
        gpus = tuple(
            GpuState(_req_str(g, "name"), _str(g, "compute_capability"))
            for g in (_dict(item, "a GPU") for item in _list(hw.get("gpus", []), "gpus"))
        )
        hardware = HardwareState(
            _str(hw, "driver_version"), _str(hw, "cuda_driver_version"), gpus, _str(hw, "source") or "none"
        )
    environments = tuple(
        _env_from_json(_dict(e, "an environment")) for e in _list(top.get("environments", []), "environments")
    )
    notes = tuple(str(n) for n in _list(top.get("notes", []), "notes"))
    return MonitorState(_str(top, "checked_at"), hardware, environments, _str(top, "error"), notes)


def _env_from_json(obj: dict[str, object]) -> EnvState:
    try:
        status = EnvStatus(_req_str(obj, "status"))
    except ValueError as exc:
        raise StateFormatError(str(exc)) from exc
    findings = tuple(
        FindingState(_req_str(f, "code"), _req_str(f, "severity"), _req_str(f, "message"), _req_str(f, "fix"))
        for f in (_dict(item, "a finding") for item in _list(obj.get("findings", []), "findings"))
    )
    plan = None
    if obj.get("plan") is not None:
        p = _dict(obj["plan"], "plan")
        size = p.get("download_bytes")
        if size is not None and not isinstance(size, int):
            raise StateFormatError("download_bytes should be a number")
        plan = PlanState(
            _req_str(p, "torch"),
            _req_str(p, "variant"),
            _req_str(p, "index_url"),
            tuple(str(r) for r in _list(p.get("requirements", []), "requirements")),
            size,
            bool(p.get("changes_nothing", False)),
        )
    return EnvState(
        path=_req_str(obj, "path"),
        python=_req_str(obj, "python"),
        python_version=_str(obj, "python_version"),
        kind=_str(obj, "kind") or "venv",
        torch=_str(obj, "torch"),
        torchvision=_str(obj, "torchvision"),
        torchaudio=_str(obj, "torchaudio"),
        status=status,
        findings=findings,
        plan=plan,
        plan_problem=_str(obj, "plan_problem"),
    )


# --- the file -----------------------------------------------------------------------------------


def load_state(path: Path | None = None) -> Loaded:
    """The remembered state; a first start (no file) is `Loaded(None)`.

    Never raises for the file's content: a corrupt or newer file is renamed aside and reported.
    """
    path = path or state_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Loaded(None)
    except OSError as exc:
        return Loaded(None, problem=f"the state file {path} could not be read ({exc.strerror or exc})")
    try:
        obj = json.loads(text)
        version = obj.get("schema_version") if isinstance(obj, dict) else None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            return _set_aside(
                path, f"v{version}", f"it was written by a newer torchdoctor (schema {version})"
            )
        if version != SCHEMA_VERSION:
            raise StateFormatError(f"schema_version {version!r} is not {SCHEMA_VERSION}")
        return Loaded(state_from_json(obj))
    except (ValueError, AttributeError) as exc:  # JSONDecodeError and StateFormatError are ValueErrors
        return _set_aside(path, "corrupt", f"it could not be read ({exc})")


def _set_aside(path: Path, tag: str, why: str) -> Loaded:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{tag}-{stamp}")
    try:
        path.replace(target)
    except OSError as exc:
        return Loaded(
            None, problem=f"the state file {path} was ignored: {why}; moving it aside failed ({exc})"
        )
    return Loaded(None, set_aside=target, problem=f"the state file was set aside as {target.name}: {why}")


def save_state(state: MonitorState, path: Path | None = None) -> None:
    """Atomic: a reader (or a crash) sees the old file or the new one, never half of one.

    Raises OSError when the folder cannot be written (full disk, read-only); the caller decides
    how loud to be, the state in memory stays valid either way.
    """
    path = path or state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state_to_json(state), indent=1, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
