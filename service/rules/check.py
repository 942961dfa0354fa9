"""One check: read every environment's build and diagnose it against the hardware.

This is the seam the CLI, the tray and the monitor share; it does no probing or discovery itself
(those are passed in), so a check over 100 environments costs a few file reads each.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.envs.discover import read_pyvenv_cfg
from torchdoctor.service.envs.usersite import UserSiteTorch, user_site_torch
from torchdoctor.service.errors import UnreadableError
from torchdoctor.service.facts.knowledge import Knowledge
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.models import (
    CheckReport,
    EnvKind,
    EnvReport,
    Finding,
    Hardware,
    PythonEnv,
    Severity,
    TorchBuild,
)
from torchdoctor.service.probe.hardware import hardware_to_json
from torchdoctor.service.rules.diagnose import diagnose, interrupted_finding
from torchdoctor.service.rules.interrupted import find_interrupted
from torchdoctor.service.rules.usersite import user_site_finding

SCHEMA_VERSION = 1


def check_environment(
    env: PythonEnv,
    hardware: Hardware,
    knowledge: Knowledge,
    *,
    index_base: str = DEFAULT_INDEX_BASE,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> EnvReport:
    """Raises UnreadableError when the environment's files cannot be read.

    `index_base`: the index the fix texts' hand commands name, the one `plan` and `fix` would use.
    `home` and `environ` place the user site (default: this user's).
    """
    reading = read_build(env, knowledge)
    findings = diagnose(env, reading, hardware, knowledge, index_base=index_base)
    build = reading.build if reading else None
    user = user_site_torch_of(env, home, environ)
    if user is not None:
        findings = _by_severity((*findings, user_site_finding(env, build, user)))
    # Read-only: a pending snapshot left by a killed fix is looked at, never restored here.
    interrupted = interrupted_finding(env, find_interrupted(env.root))
    if interrupted is not None:
        findings = (interrupted, *findings)
    return EnvReport(env=env, torch=build, findings=findings)


_SEVERITY_ORDER = (Severity.ERROR, Severity.WARN, Severity.INFO)


def _by_severity(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: _SEVERITY_ORDER.index(f.severity)))


def user_site_torch_of(
    env: PythonEnv, home: Path | None = None, environ: Mapping[str, str] | None = None
) -> UserSiteTorch | None:
    """The user site's torch that `env`'s Python would see (None: none, or a venv that ignores it)."""
    try:
        cfg = read_pyvenv_cfg(env.root) if env.kind is EnvKind.VENV else None
    except OSError:
        cfg = None
    return user_site_torch(
        env,
        pyvenv_cfg=cfg,
        home=home if home is not None else Path.home(),
        environ=environ if environ is not None else os.environ,
    )


def run_check(
    hardware: Hardware,
    explicit: Iterable[PythonEnv],
    discovered: Iterable[PythonEnv],
    knowledge: Knowledge,
    notes: Iterable[str] = (),
    *,
    index_base: str = DEFAULT_INDEX_BASE,
) -> CheckReport:
    """Explicit environments must be readable (an error is the user's to fix: exit 2); a discovered
    one that cannot be read becomes a note, because the user never asked for it."""
    reports: list[EnvReport] = []
    seen: set[object] = set()
    for env in explicit:
        if env.root not in seen:
            seen.add(env.root)
            reports.append(check_environment(env, hardware, knowledge, index_base=index_base))
    all_notes = list(notes)
    for env in discovered:
        if env.root in seen:
            continue
        seen.add(env.root)
        try:
            reports.append(check_environment(env, hardware, knowledge, index_base=index_base))
        except UnreadableError as exc:
            all_notes.append(f"skipped {env.root}: {exc}")
        except Exception as exc:  # one odd environment must not stop a whole check (or the tray)
            all_notes.append(f"skipped {env.root}: could not be read ({type(exc).__name__}: {exc})")
    return CheckReport(hardware=hardware, environments=tuple(reports), notes=tuple(all_notes))


def torch_to_json(build: TorchBuild | None) -> dict[str, object] | None:
    if build is None:
        return None
    return {
        "version": build.version,
        "variant": build.variant,
        "cuda": build.cuda,
        "torchvision": build.torchvision,
        "torchaudio": build.torchaudio,
        "installer": build.installer.value,
    }


def finding_to_json(finding: Finding) -> dict[str, object]:
    return {
        "code": finding.code.value,
        "severity": finding.severity.value,
        "message": finding.message,
        "fix": finding.fix,
    }


def env_report_to_json(report: EnvReport) -> dict[str, object]:
    env = report.env
    return {
        "path": str(env.root),
        "python": str(env.python),
        "python_version": env.python_version,
        "kind": env.kind.value,
        "torch": torch_to_json(report.torch),
        "status": report.status.value,
        "findings": [finding_to_json(f) for f in report.findings],
    }


def check_to_json(report: CheckReport) -> dict[str, object]:
    """The `check --json` document (DESIGN.md, schema_version 1)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "hardware": hardware_to_json(report.hardware),
        "environments": [env_report_to_json(e) for e in report.environments],
        "status": report.status.value,
        "notes": list(report.notes),
    }
