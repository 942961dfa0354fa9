"""One check: read every environment's build and diagnose it against the hardware.

This is the seam the CLI, the tray and the monitor share; it does no probing or discovery itself
(those are passed in), so a check over 100 environments costs a few file reads each.
"""

from __future__ import annotations

from collections.abc import Iterable

from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.errors import UnreadableError
from torchdoctor.service.facts.knowledge import Knowledge
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.models import CheckReport, EnvReport, Finding, Hardware, PythonEnv, TorchBuild
from torchdoctor.service.probe.hardware import hardware_to_json
from torchdoctor.service.rules.diagnose import diagnose, interrupted_finding
from torchdoctor.service.rules.interrupted import find_interrupted

SCHEMA_VERSION = 1


def check_environment(
    env: PythonEnv, hardware: Hardware, knowledge: Knowledge, *, index_base: str = DEFAULT_INDEX_BASE
) -> EnvReport:
    """Raises UnreadableError when the environment's files cannot be read.

    `index_base`: the index the fix texts' hand commands name, the one `plan` and `fix` would use.
    """
    reading = read_build(env, knowledge)
    findings = diagnose(env, reading, hardware, knowledge, index_base=index_base)
    # Read-only: a pending snapshot left by a killed fix is looked at, never restored here.
    interrupted = interrupted_finding(env, find_interrupted(env.root))
    if interrupted is not None:
        findings = (interrupted, *findings)
    return EnvReport(env=env, torch=reading.build if reading else None, findings=findings)


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
