"""Which installed projects an install will change, asked of the installer itself (a dry run).

The metadata of what is installed cannot say this: a new dependency that is not installed yet
may require a newer version of one that is (`tdnew` needs `tdhelper>=2`, 1.0 is installed), and
only a resolve against the index sees that. So before the snapshot, the same command the install
will run is run with the installer's dry-run option, and every project it would install,
upgrade, downgrade or remove is saved too:

  uv pip install ... --dry-run WHEEL...        (its summary on stderr: ` - tdhelper==1.0`,
                                                ` + tdhelper==2.0`, ` ~ torch==...`)
  pip install ... --dry-run --quiet --report - WHEEL...   (pip >= 22.2: the JSON installation
                                                report on stdout, `install[].metadata.name`)

For pip this is the second of its two commands (see PipBackend.commands): the one that resolves
dependencies. A dry run that fails is not fatal: the caller falls back to the metadata and says
so in the log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.utils import canonicalize_name

from torchdoctor.service import proc
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install.installers import Backend, PipBackend, UvBackend, installer_environ
from torchdoctor.service.models import PythonEnv

DRY_RUN_TIMEOUT_S: Final = 600.0  # a resolve may fetch metadata of large wheels over a slow line
_UV_CHANGE_RE: Final = re.compile(r"^\s*[-+~]\s+(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==|@|\[)")


def parse_uv_dry_run(text: str) -> set[str]:
    """The projects uv's `--dry-run` summary would install, reinstall or uninstall."""
    return {
        canonicalize_name(m.group("name")) for line in text.splitlines() if (m := _UV_CHANGE_RE.match(line))
    }


def parse_pip_report(text: str) -> set[str]:
    """The projects a pip installation report (`--report -`) would install. ValueError if unreadable."""
    data = json.loads(text)
    names: set[str] = set()
    for item in data.get("install", []):
        name = item.get("metadata", {}).get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            names.add(canonicalize_name(name))
    return names


def dry_run_argv(
    backend: Backend, env: PythonEnv, wheels: Sequence[Path], index_url: str | None
) -> list[str] | None:
    """The installer's own command with its dry-run options; None for a backend without one."""
    commands = backend.commands(env, wheels, index_url=index_url)
    if isinstance(backend, UvBackend):
        return [*commands[0], "--dry-run"]
    if isinstance(backend, PipBackend):
        return [*commands[-1], "--dry-run", "--quiet", "--report", "-"]
    return None


@dataclass(frozen=True, slots=True)
class Resolution:
    names: frozenset[str]  # the projects the install would change (empty when unknown)
    note: str | None = None  # why the dry run told nothing, for the log


def installer_changes(
    backend: Backend,
    env: PythonEnv,
    wheels: Sequence[Path],
    *,
    index_url: str | None,
    timeout: float = DRY_RUN_TIMEOUT_S,
) -> Resolution:
    """Ask the installer which projects installing `wheels` would change (see the module docstring)."""
    argv = dry_run_argv(backend, env, wheels, index_url)
    if argv is None or not wheels:
        return Resolution(frozenset(), note="no dry run for this installer")
    try:
        # The index reaches the installer only through its environment (never argv: it may hold
        # credentials), so the dry run needs the same variable the install gets.
        environ = installer_environ() | backend.index_environ(index_url)
        done = proc.run(argv, timeout=timeout, env=environ)
    except (OSError, TorchdoctorError) as exc:
        return Resolution(frozenset(), note=f"dry run could not run: {exc}")
    if not done.ok:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Resolution(frozenset(), note=f"dry run failed: {tail}")
    if isinstance(backend, UvBackend):
        return Resolution(frozenset(parse_uv_dry_run(done.stderr + "\n" + done.stdout)))
    try:
        return Resolution(frozenset(parse_pip_report(done.stdout)))
    except (ValueError, AttributeError) as exc:
        return Resolution(frozenset(), note=f"dry run report unreadable: {exc}")
