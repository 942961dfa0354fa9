"""Reading a `check --json` document (docs/contract.md, schema_version 1) into a MachineDoc. Pure.

The document may come from any machine and any torchdoctor version, or be truncated by a full
disk: every way it can be wrong becomes a `DocumentError` with a one-line reason, never a crash.
Keys may be added to the contract, so unknown keys are ignored; a missing fact is null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from torchdoctor.agent.report.model import (
    SEVERITIES,
    STATUSES,
    EnvView,
    FindingView,
    GpuView,
    HardwareView,
    MachineDoc,
)

SCHEMA_VERSION: Final = 1
OVERALL: Final = ("ok", "warn", "broken")


class DocumentError(ValueError):
    """The text is not a version-1 `check --json` document; str() is the reason for a person."""


def _obj(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise DocumentError(f"{where} is not a JSON object")
    return value


def _list(value: object, where: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DocumentError(f"{where} is not a list")
    return value


def _opt_str(obj: Mapping[str, object], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DocumentError(f"{where}.{key} is not a string")
    return str(value)


def _req_str(obj: Mapping[str, object], key: str, where: str) -> str:
    value = _opt_str(obj, key, where)
    if value is None:
        raise DocumentError(f"{where} has no {key!r}")
    return value


def _choice(obj: Mapping[str, object], key: str, where: str, allowed: tuple[str, ...]) -> str:
    value = _req_str(obj, key, where)
    if value not in allowed:
        raise DocumentError(f"{where}.{key} is {value[:40]!r}, not one of {', '.join(allowed)}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    return tuple(str(item) for item in _list(value, where))


def _hardware(value: object) -> HardwareView:
    hw = _obj(value, "hardware")
    gpus = []
    for i, item in enumerate(_list(hw.get("gpus"), "hardware.gpus")):
        gpu = _obj(item, f"hardware.gpus[{i}]")
        memory = gpu.get("memory_mib")
        gpus.append(
            GpuView(
                name=_req_str(gpu, "name", f"hardware.gpus[{i}]"),
                compute_capability=_opt_str(gpu, "compute_capability", f"hardware.gpus[{i}]"),
                # Bounded: a made-up size (10**400) must not overflow the page's GiB arithmetic.
                memory_mib=memory
                if isinstance(memory, int) and not isinstance(memory, bool) and 0 < memory < 2**40
                else None,
            )
        )
    return HardwareView(
        source=_opt_str(hw, "source", "hardware"),
        platform=_opt_str(hw, "platform", "hardware"),
        driver_version=_opt_str(hw, "driver_version", "hardware"),
        cuda_driver_version=_opt_str(hw, "cuda_driver_version", "hardware"),
        gpus=tuple(gpus),
        state=_opt_str(hw, "state", "hardware"),
        notes=_strings(hw.get("notes"), "hardware.notes"),
    )


def _environment(value: object, where: str) -> EnvView:
    env = _obj(value, where)
    torch_obj = env.get("torch")
    torch = _obj(torch_obj, f"{where}.torch") if torch_obj is not None else {}
    findings = []
    for i, item in enumerate(_list(env.get("findings"), f"{where}.findings")):
        here = f"{where}.findings[{i}]"
        finding = _obj(item, here)
        findings.append(
            FindingView(
                code=_req_str(finding, "code", here),
                severity=_choice(finding, "severity", here, SEVERITIES),
                message=_opt_str(finding, "message", here) or "",
                fix=_opt_str(finding, "fix", here) or "",
            )
        )
    return EnvView(
        path=_req_str(env, "path", where),
        python=_opt_str(env, "python", where),
        python_version=_opt_str(env, "python_version", where),
        kind=_opt_str(env, "kind", where),
        torch=_opt_str(torch, "version", f"{where}.torch"),
        variant=_opt_str(torch, "variant", f"{where}.torch"),
        cuda=_opt_str(torch, "cuda", f"{where}.torch"),
        torchvision=_opt_str(torch, "torchvision", f"{where}.torch"),
        torchaudio=_opt_str(torch, "torchaudio", f"{where}.torch"),
        installer=_opt_str(torch, "installer", f"{where}.torch"),
        status=_choice(env, "status", where, STATUSES),
        findings=tuple(findings),
    )


def document_from_json(
    data: object, *, name: str, source: str, modified: datetime | None = None
) -> MachineDoc:
    """A parsed JSON value as a MachineDoc; raises DocumentError with the reason."""
    top = _obj(data, "the document")
    version = top.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise DocumentError(
            f"written by a newer torchdoctor (schema_version {version}; this one reads {SCHEMA_VERSION})"
        )
    if version != SCHEMA_VERSION:
        raise DocumentError(
            f"schema_version is {str(version)[:20]!r}, not {SCHEMA_VERSION}: not a `check --json` document"
        )
    if "hardware" not in top:
        raise DocumentError("it has no 'hardware': not a `check --json` document")
    environments = tuple(
        _environment(item, f"environments[{i}]")
        for i, item in enumerate(_list(top.get("environments"), "environments"))
    )
    return MachineDoc(
        name=name,
        source=source,
        hardware=_hardware(top["hardware"]),
        environments=environments,
        status=_choice(top, "status", "the document", OVERALL),
        notes=_strings(top.get("notes"), "notes"),
        modified=modified,
    )


def parse_document(text: str, *, name: str, source: str, modified: datetime | None = None) -> MachineDoc:
    """`check --json` text as a MachineDoc; raises DocumentError for text that is not one."""
    if not text.strip():
        raise DocumentError("the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # A whole document ends with its closing brace; a full disk or a killed ssh cuts that off.
        cut = "; the file looks truncated" if not text.rstrip().endswith(("}", "]")) else ""
        raise DocumentError(
            f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}{cut})"
        ) from None
    except RecursionError:
        raise DocumentError("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise DocumentError(f"not valid JSON ({str(exc)[:80]})") from None
    return document_from_json(data, name=name, source=source, modified=modified)
