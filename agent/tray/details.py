"""The plain-text details report the tray opens ("Show details"), kept in the state folder.

Until the HTML report exists this is what a person (or a support ticket) reads: every
environment, its build, each finding with its fix, and what "Reinstall" would install.
"""

from __future__ import annotations

from pathlib import Path

from torchdoctor.agent.tray.menu import human_bytes
from torchdoctor.service.monitor.state import EnvState, MonitorState

DETAILS_NAME = "details.txt"


def _env_lines(env: EnvState) -> list[str]:
    lines = [
        f"{env.path}  [{env.status.value}]",
        f"  python {env.python_version or '?'} ({env.kind}): {env.python}",
    ]
    if env.torch is None:
        lines.append("  torch: not installed")
    else:
        extra = "".join(
            f", {name} {version}"
            for name, version in (("torchvision", env.torchvision), ("torchaudio", env.torchaudio))
            if version
        )
        lines.append(f"  torch {env.torch}{extra}")
    for f in env.findings:
        lines += [f"  {f.severity}: {f.code}: {f.message}", f"    fix: {f.fix}"]
    if env.plan is not None and not env.plan.changes_nothing:
        size = f", {human_bytes(env.plan.download_bytes)} to download" if env.plan.download_bytes else ""
        lines.append(
            f"  Reinstall installs {' '.join(env.plan.requirements)} from {env.plan.index_url}{size}"
        )
    elif env.plan_problem:
        lines.append(f"  No reinstall on offer: {env.plan_problem}")
    return lines


def render_details(state: MonitorState | None, focus: str | None = None) -> str:
    if state is None:
        return "torchdoctor has not finished its first check yet.\n"
    lines = [f"torchdoctor: checked {state.checked_at or 'never'}"]
    if state.error:
        lines.append(f"The last check failed: {state.error}")
    hw = state.hardware
    if hw is not None:
        gpus = "; ".join(
            g.name + (f" (compute capability {g.compute_capability})" if g.compute_capability else "")
            for g in hw.gpus
        )
        lines.append(
            f"NVIDIA driver: {hw.driver_version or 'none'}"
            + (f", CUDA {hw.cuda_driver_version}" if hw.cuda_driver_version else "")
        )
        lines.append(f"GPUs: {gpus or 'none'} (from {hw.source})")
    lines += [f"note: {n}" for n in state.notes]
    envs = sorted(state.environments, key=lambda e: e.path != focus)  # the one asked about first
    for env in envs:
        lines += ["", *_env_lines(env)]
    return "\n".join(lines) + "\n"


def write_details(folder: Path, state: MonitorState | None, focus: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DETAILS_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_details(state, focus), encoding="utf-8")
    tmp.replace(path)
    return path
