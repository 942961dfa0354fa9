"""Installing local wheel files into an environment with uv or pip, driven as subprocesses.

The seam follows pipx's backends: a `Backend` ABC with a uv and a pip implementation, and a pure
`resolve_backend` that picks one and says why. The caller (the `fix` orchestration) has already
downloaded and hash-checked the wheels and validated `index_url`; a backend only installs them,
letting the installer fetch *dependencies* from that one index.

What the commands look like (one per line; pip needs two, see `PipBackend.commands`):
  uv pip install --no-config --python ENV_PY --color never --reinstall-package torch ...
      [--no-index] WHEEL...
  ENV_PY -s -m pip install ... --force-reinstall --no-deps --no-index WHEEL...
  ENV_PY -s -m pip install ... [--no-index] WHEEL...
  (an environment without pip: `sys.executable -s -m pip --python ENV_PY install ...`, pip >= 22.3)
The index is never on the command line, where every user of the machine can read it (and its
credentials: urlsecrets.py): uv gets it in UV_DEFAULT_INDEX, pip in PIP_INDEX_URL.

pip never installs into the user's site (`%APPDATA%/Python`, ~/.local) when the environment's
site-packages is read-only: it runs with `-s` and PYTHONNOUSERSITE=1, and with user site off pip
installs into site-packages or fails; `preflight` checks first that site-packages is writable and
says "cannot write" (exit 2) before anything is downloaded into it or snapshotted.
With `break_system_packages` (the user's `fix --break-system-packages`, for a Python marked
externally managed by PEP 668) each command also gets `--break-system-packages`, the name pip
(23.0.1+) and uv both use.

No machine or user configuration may change what gets installed: pip runs with
`PIP_CONFIG_FILE=os.devnull` (no config file at all, the global /etc/xdg/pip one included), uv
runs `--no-config`, and both get an environment with every PIP_*/UV_* variable removed
(PIP_FIND_LINKS or UV_CONSTRAINT would otherwise add sources or caps) before ours are set. pip's
`--isolated` is not used: it would also ignore PIP_INDEX_URL, the only way to give it the index
without putting credentials on the command line.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Final, TextIO

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from torchdoctor.service import proc
from torchdoctor.service.errors import BadInputError, TorchdoctorError
from torchdoctor.service.install.urlsecrets import redact_text, with_credentials
from torchdoctor.service.models import PythonEnv

PIP_PYTHON_OPTION_MIN: Final = Version("22.3")  # first pip with `--python`
# First pip with `--break-system-packages`; older ones do not enforce PEP 668 at all.
PIP_BREAK_SYSTEM_MIN: Final = Version("23.0.1")
BREAK_SYSTEM_PACKAGES: Final = "--break-system-packages"
_VERSION_PROBE_TIMEOUT: Final = 30.0
_TAIL_LINES: Final = 200
# Transport-only uv settings a user may need (corporate certificates, a cache on another disk);
# none of them changes which packages are chosen.
# Where the user keeps caches and how the network is reached stay theirs; what steers installs goes.
_UV_KEEP: Final = frozenset(
    {"UV_CACHE_DIR", "UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS", "PIP_CACHE_DIR"}
)


class InstallFailedError(TorchdoctorError):
    """The installer ran and failed (or ran out of time); the caller restores the snapshot."""

    code = "install-failed"

    def __init__(self, message: str, *, hint: str | None = None, line: str = "") -> None:
        super().__init__(message, hint=hint)
        self.line = line  # the installer's own last meaningful error line


class InstallerUnavailableError(TorchdoctorError):
    """Neither a usable uv nor a usable pip can reach this environment."""

    code = "installer-unavailable"


class NotWritableError(BadInputError):
    """The environment's site-packages cannot be written by this user (e.g. under C:\\Program Files)."""

    code = "not-writable"


class UnknownInstallerError(BadInputError):
    code = "unknown-installer"


class UvNotFoundError(BadInputError):
    """`--installer uv` was asked for and there is no uv."""

    code = "uv-not-found"


# ---------------------------------------------------------------------------------------------
# Choosing a backend (pure)


def resolve_backend(
    requested: str | None, *, uv_path: str | None, env: PythonEnv, uv_version: str | None = None
) -> tuple[str, str]:
    """Pick "uv" or "pip" and say why, in words for the log and `fix` output.

    `requested` is `--installer` (None: choose); `uv_path` is what `find_uv()` found.
    """
    uv_desc = f"uv {uv_version}" if uv_version else "uv"
    if requested is not None:
        choice = requested.strip().lower()
        if choice == "pip":
            how = "its own pip" if env.has_pip else "torchdoctor's pip with --python (it has no pip)"
            return "pip", f"--installer pip was given; installing with {how}"
        if choice == "uv":
            if uv_path is None:
                raise UvNotFoundError(
                    "--installer uv was given, but uv was not found on PATH or next to torchdoctor",
                    hint="install uv (https://docs.astral.sh/uv/) or leave out --installer",
                )
            return "uv", f"--installer uv was given; {uv_desc} at {uv_path}"
        raise UnknownInstallerError(
            f"unknown installer {requested!r}", hint="choose --installer uv or --installer pip"
        )
    if uv_path is not None:
        return "uv", f"{uv_desc} found at {uv_path}"
    if env.has_pip:
        return "pip", "uv was not found; using the environment's own pip"
    return "pip", "uv was not found and the environment has no pip; using torchdoctor's pip with --python"


def find_uv() -> str | None:
    """uv on PATH, else the one installed beside torchdoctor's interpreter (a `uv` dependency).

    PATH is searched by hand, without its relative entries and the current folder: on Windows,
    `shutil.which` (before Python 3.12) and a bare "uv" both look in the current folder first.
    """
    name = "uv.exe" if sys.platform == "win32" else "uv"
    try:
        cwd: Path | None = Path.cwd()
    except OSError:
        cwd = None
    for folder in proc.trusted_path_entries(os.environ.get("PATH"), cwd):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else None


def uv_version(uv_path: str) -> str | None:
    """`uv --version` -> "0.13.9"; None when it does not answer sensibly."""
    try:
        done = proc.run([uv_path, "--version"], timeout=_VERSION_PROBE_TIMEOUT, env=installer_environ())
    except (OSError, TorchdoctorError):
        return None
    match = re.match(r"uv\s+(\S+)", done.stdout.strip())
    return match.group(1) if done.ok and match else None


def parse_pip_version(text: str) -> Version | None:
    """`pip 23.2.1 from /x/site-packages/pip (python 3.11)` -> Version("23.2.1")."""
    match = re.match(r"\s*pip\s+(\S+)", text)
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


# ---------------------------------------------------------------------------------------------
# Reading installer output (pure)

_UV_COUNT_RE: Final = re.compile(r"^(Resolved|Prepared|Uninstalled|Installed|Audited)\s+(\d+)\s+packages?")
_UV_CHANGE_RE: Final = re.compile(r"^\s([-+~])\s+(\S+?)==(\S+)")
_UV_VERBS: Final = {"-": "Removed", "+": "Installed", "~": "Reinstalled"}


def progress_message(line: str) -> str | None:
    """Turn one line of pip or uv output into a short progress message; None for noise."""
    text = line.rstrip()
    change = _UV_CHANGE_RE.match(text)
    if change:
        return f"{_UV_VERBS[change.group(1)]} {change.group(2)} {change.group(3)}"
    text = text.strip()
    count = _UV_COUNT_RE.match(text)
    if count:
        verb = "Removed" if count.group(1) == "Uninstalled" else count.group(1)
        return f"{verb} {count.group(2)} package{'s' if count.group(2) != '1' else ''}"
    for prefix, verb in (("Processing ", "Preparing"), ("Downloading ", "Downloading")):
        if text.startswith(prefix):
            target = text[len(prefix) :].split(" (", 1)[0].strip()
            return f"{verb} {target.rsplit('/', 1)[-1]}…"
    if text.startswith("Collecting "):
        return f"Resolving {text[len('Collecting ') :].split(' (', 1)[0]}…"
    if text.startswith("Installing collected packages:"):
        return f"Installing {text.split(':', 1)[1].strip()}…"
    if text.startswith("Attempting uninstall:"):
        return f"Removing the previous {text.split(':', 1)[1].strip()}…"
    if text.startswith("Successfully installed "):
        return "Installed " + text[len("Successfully installed ") :]
    return None


_CAUSE_PREFIXES: Final = ("cause:", "Caused by:", "╰─▶")


def _long_path_hint(after: Sequence[str]) -> str:
    """pip's `HINT: This error might have occurred since this system does not have Windows Long Path
    support enabled...` follows its ERROR line; it is the one thing the user can act on, so it stays."""
    hints = [t[len("HINT:") :].strip() for t in after if t.startswith("HINT:") and "long path" in t.lower()]
    return f" (pip: {hints[0]})" if hints else ""


def failure_line(lines: Sequence[str]) -> str:
    """The installer's last meaningful error line, readable on its own.

    pip: the last `ERROR: ...` line. uv: its last `error: ...` line, completed with the innermost
    `cause:` beneath it ("Failed to read `torch @ file://...`: unable to locate the end of central
    directory record"). Otherwise the last non-empty line that is not a warning.
    """
    stripped = [ln.strip() for ln in lines]
    for i in range(len(stripped) - 1, -1, -1):
        text = stripped[i]
        if text.startswith("ERROR:"):
            return text[len("ERROR:") :].strip() + _long_path_hint(stripped[i + 1 :])
        if text.lower().startswith("error:"):
            head = text[len("error:") :].strip()
            causes = [
                t.split(maxsplit=1)[1] if " " in t else ""
                for t in stripped[i + 1 :]
                if t.startswith(_CAUSE_PREFIXES)
            ]
            head = head.rstrip(":").rstrip()
            if causes and causes[-1]:
                return f"{head}: {causes[-1].strip()}"
            # uv sometimes explains on the following indented lines (externally managed, hints).
            return head
    for text in reversed(stripped):
        if text and not text.lower().startswith(("warning", "hint:", "note:")):
            return text
    return "no output"


# ---------------------------------------------------------------------------------------------
# The one streaming subprocess helper


@dataclass(frozen=True, slots=True)
class StreamResult:
    argv: tuple[str, ...]
    returncode: int | None  # None when it was killed for running out of time
    timed_out: bool
    tail: tuple[str, ...]  # the last lines of output (stdout and stderr together)


def installer_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for pip and uv: this process's, without anything that steers installs.

    PIP_*/UV_* go (find-links, constraints, extra indexes), as do PYTHONPATH/PYTHONHOME (they
    would put our own packages in front of the target environment's) and VIRTUAL_ENV/CONDA_PREFIX
    (uv prefers them when guessing an environment; we always name one with --python).
    """
    source = os.environ if base is None else base
    dropped = (
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "PIP_",
        "UV_",
        "TORCHDOCTOR_INDEX_AUTH",  # ours; the installer gets its index in its own variable
    )
    env = {k: v for k, v in source.items() if k in _UV_KEEP or not k.upper().startswith(dropped)}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # pip skips *every* config file, global ones included
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PYTHONNOUSERSITE="1",  # no fallback into the user's site-packages (module docstring)
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",  # pip on Windows would otherwise write in the console code page
        PYTHONUTF8="1",
    )
    return env


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _relay(
    lines: queue.Queue[str | None],
    deadline: float,
    *,
    tail: deque[str],
    log: TextIO,
    on_line: Callable[[str], None] | None,
    scrub: Callable[[str], str],
) -> bool:
    """Pass lines on until the output ends (False) or the deadline passes (True)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        try:
            item = lines.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        if item is None:
            return False
        line = scrub(item.rstrip("\r\n"))
        tail.append(line)
        log.write(line + "\n")
        log.flush()
        if on_line is not None:
            on_line(line)


def stream_process(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    env: Mapping[str, str],
    log: TextIO,
    on_line: Callable[[str], None] | None = None,
    scrub: Callable[[str], str] = str,
) -> StreamResult:
    """Run `argv` and pass its output on line by line while it runs.

    The only place besides `proc.run` that starts a program, because an install can take minutes
    and the user must see it move. Same rules as `proc.run`: an argument list, never a shell, no
    console window on Windows (CREATE_NO_WINDOW). stdout and stderr are merged (uv writes to
    stderr, pip to stdout) and read by a thread, so the timeout is enforced here even when the
    installer prints nothing. On timeout, and on any exception in the caller's thread (Ctrl-C:
    KeyboardInterrupt), the installer and its children are killed before this returns or raises.
    Every line goes to `log` as it arrives, through `scrub` (which hides index credentials);
    `on_line` sees it too.
    """
    args = [os.fspath(a) for a in argv]
    shown = subprocess.list2cmdline(args) if sys.platform == "win32" else shlex.join(args)
    log.write("$ " + shown + "\n")
    log.flush()
    popen = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=proc.child_environ(env),  # marked ours: a later run can end it if we are killed
        creationflags=proc.no_window_flags(),
    )
    assert popen.stdout is not None  # noqa: S101 (stdout=PIPE above)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(popen.stdout, lines), daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    deadline = time.monotonic() + timeout
    try:
        timed_out = _relay(lines, deadline, tail=tail, log=log, on_line=on_line, scrub=scrub)
    except BaseException:
        proc.end_tree(popen)  # uv and pip may run helper interpreters
        raise
    if timed_out:
        proc.end_tree(popen)  # uv and pip may run helper interpreters
    if timed_out:
        log.write(f"(killed: still running after {timeout:g} s)\n")
        returncode: int | None = None
    else:
        try:
            returncode = popen.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.end_tree(popen)  # uv and pip may run helper interpreters
            timed_out, returncode = True, None
    reader.join(timeout=5)
    popen.stdout.close()
    log.write(f"(exit status {returncode})\n")
    log.flush()
    return StreamResult(tuple(args), returncode, timed_out, tuple(tail))


# ---------------------------------------------------------------------------------------------
# Backends


def wheel_projects(wheels: Sequence[Path]) -> list[str]:
    """Canonical project names of the wheel files, in order: ["torch", "torchvision"]."""
    names: list[str] = []
    for wheel in wheels:
        try:
            name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        except InvalidWheelFilename as exc:
            raise BadInputError(f"not a wheel file name: {wheel.name} ({exc})") from None
        if name not in names:
            names.append(name)
    return names


class Backend(ABC):
    """Installs local wheel files into one environment.

    Contract: `install` changes only the given projects (reinstalled even when the same version is
    present, because a "fix" may be repairing a damaged copy) plus any dependency they lack; it
    never touches other packages' files on purpose. It streams the installer's output into `log`
    and short messages into `progress`; it raises InstallFailedError on failure or timeout and
    lets KeyboardInterrupt through after killing the installer. It does not roll back: the
    caller owns the snapshot. Call `preflight` before taking a snapshot so a backend that cannot
    run is reported before anything changes.
    """

    name: ClassVar[str]
    index_variable: ClassVar[str]  # the environment variable that gives the installer its index

    @abstractmethod
    def preflight(self, env: PythonEnv) -> None:
        """Raise InstallerUnavailableError when this backend cannot install into `env`, and
        NotWritableError when this user cannot write its site-packages."""

    def index_environ(self, index_url: str | None) -> dict[str, str]:
        """The index (credentials included) as the installer reads it from its environment."""
        return {self.index_variable: with_credentials(index_url)} if index_url else {}

    @abstractmethod
    def commands(self, env: PythonEnv, wheels: Sequence[Path], *, index_url: str | None) -> list[list[str]]:
        """The argument lists `install` runs, in order (pure; shown by `fix --dry-run`)."""

    def install(
        self,
        env: PythonEnv,
        wheels: Sequence[Path],
        *,
        index_url: str | None,
        log: TextIO,
        timeout: float,
        progress: Callable[[str], None] | None,
    ) -> None:
        if not wheels:
            return
        projects = ", ".join(wheel_projects(wheels))
        deadline = time.monotonic() + timeout
        environ = installer_environ() | self.index_environ(index_url)
        urls = (index_url,) if index_url else ()

        def scrub(line: str) -> str:
            return redact_text(line, urls)

        def on_line(line: str) -> None:
            message = progress_message(line)
            if message is not None and progress is not None:
                progress(message)

        for step, argv in enumerate(self.commands(env, wheels, index_url=index_url)):
            if progress is not None:
                first = f"Installing {projects} with {self.name}…"
                progress(first if step == 0 else f"Checking the dependencies of {projects}…")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error(projects, timeout)
            try:
                result = stream_process(
                    argv, timeout=remaining, env=environ, log=log, on_line=on_line, scrub=scrub
                )
            except OSError as exc:
                raise InstallFailedError(
                    f"could not start {self.name}: {exc.strerror or exc}", hint=f"command: {argv[0]}"
                ) from None
            if result.timed_out:
                raise self._timeout_error(projects, timeout)
            if result.returncode != 0:
                line = failure_line(result.tail)
                raise InstallFailedError(
                    f"{self.name} could not install {projects}: {line}",
                    hint="the installer's full output is in the fix log",
                    line=line,
                )

    def _timeout_error(self, projects: str, timeout: float) -> InstallFailedError:
        return InstallFailedError(
            f"{self.name} did not finish installing {projects} within {timeout:g} s",
            hint="a slow network or disk; try again, or raise the install timeout",
            line="timed out",
        )


class UvBackend(Backend):
    """`uv pip install --python ENV_PY ...`; works in environments without pip."""

    name = "uv"
    index_variable = "UV_DEFAULT_INDEX"

    def __init__(self, uv_path: str, *, break_system_packages: bool = False) -> None:
        self.uv_path = uv_path
        self.break_system_packages = break_system_packages

    def preflight(self, env: PythonEnv) -> None:
        if not Path(self.uv_path).is_file():
            raise InstallerUnavailableError(f"uv is no longer at {self.uv_path}")
        check_writable(env)

    def commands(self, env: PythonEnv, wheels: Sequence[Path], *, index_url: str | None) -> list[list[str]]:
        argv = [self.uv_path, "pip", "install", "--no-config", "--python", os.fspath(env.python)]
        argv += ["--color", "never", "--no-progress"]
        if self.break_system_packages:
            argv.append(BREAK_SYSTEM_PACKAGES)
        # --reinstall-package, not --reinstall: only these projects are forced, never their deps.
        for name in wheel_projects(wheels):
            argv += ["--reinstall-package", name]
        if not index_url:
            argv.append("--no-index")  # with an index: UV_DEFAULT_INDEX (index_environ)
        argv += [os.fspath(w) for w in wheels]
        return [argv]


class PipBackend(Backend):
    """The environment's own pip, or ours with `--python` where the environment has none."""

    name = "pip"
    index_variable = "PIP_INDEX_URL"

    def __init__(self, host_python: str | None = None, *, break_system_packages: bool = False) -> None:
        # The interpreter whose pip drives `--python`; a frozen torchdoctor.exe has no pip.
        frozen = bool(getattr(sys, "frozen", False))
        self.host_python = host_python if host_python is not None else (None if frozen else sys.executable)
        self.break_system_packages = break_system_packages

    def pip_argv(self, env: PythonEnv) -> list[str]:
        # -s: no user site, so pip cannot fall back to installing into it (and does not run
        # packages from it).
        if env.has_pip:
            return [os.fspath(env.python), "-s", "-m", "pip"]
        if self.host_python is None:
            raise InstallerUnavailableError(
                f"{env.root} has no pip, and uv was not found",
                hint="install uv (https://docs.astral.sh/uv/), or run `python -m ensurepip` in it",
            )
        return [self.host_python, "-s", "-m", "pip", "--python", os.fspath(env.python)]

    def preflight(self, env: PythonEnv) -> None:
        """Check that pip answers, and that ours is new enough for `--python` (22.3+)."""
        argv = [*self.pip_argv(env)[:4], "--version"]
        try:
            done = proc.run(argv, timeout=_VERSION_PROBE_TIMEOUT, env=installer_environ())
        except (OSError, TorchdoctorError) as exc:
            raise InstallerUnavailableError(f"pip did not answer: {exc}") from None
        version = parse_pip_version(done.stdout)
        if not done.ok or version is None:
            raise InstallerUnavailableError(
                f"pip did not answer: {failure_line((done.stdout + done.stderr).splitlines())}",
                hint="repair pip in that environment (python -m ensurepip --upgrade) or install uv",
            )
        if not env.has_pip and version < PIP_PYTHON_OPTION_MIN:
            raise InstallerUnavailableError(
                f"{env.root} has no pip, and torchdoctor's pip {version} is too old for --python (22.3+)",
                hint="install uv (https://docs.astral.sh/uv/), or upgrade the pip beside torchdoctor",
            )
        if self.break_system_packages and version < PIP_BREAK_SYSTEM_MIN:
            # That pip does not know the option, and does not refuse externally managed Pythons.
            self.break_system_packages = False
        check_writable(env)

    def commands(self, env: PythonEnv, wheels: Sequence[Path], *, index_url: str | None) -> list[list[str]]:
        """Two runs, because pip has no per-package `--force-reinstall`.

        1. `--force-reinstall --no-deps --no-index WHEELS`: replaces exactly these projects, even
           at the same version (pip would otherwise skip a local wheel whose version is installed),
           without reinstalling their dependencies as a plain `--force-reinstall` would.
        2. `WHEELS` with the index (or `--no-index`): installs any missing dependency; the wheels
           themselves are now satisfied, so nothing is installed twice. With `--no-index` it still
           proves the dependencies are present, failing with pip's own message if one is not.
        """
        common = [
            *self.pip_argv(env),
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--no-color",
            "--progress-bar",
            "off",
            "--no-warn-script-location",
            *([BREAK_SYSTEM_PACKAGES] if self.break_system_packages else []),
        ]
        files = [os.fspath(w) for w in wheels]
        replace = [*common, "--force-reinstall", "--no-deps", "--no-index", *files]
        # With an index: PIP_INDEX_URL (index_environ), never --index-url on the command line.
        deps = [*common, *([] if index_url else ["--no-index"]), *files]
        return [replace, deps]


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in `folder`: the one test that is right on Windows too, where
    os.access ignores ACLs (a venv under C:\\Program Files reads as writable to it)."""
    probe = folder / f".torchdoctor-write-test-{os.getpid()}"
    with probe.open("x"):
        pass
    probe.unlink()


def check_writable(env: PythonEnv, *, probe: Callable[[Path], None] = _probe_writable) -> None:
    """NotWritableError when this user cannot write the environment's site-packages."""
    for folder in env.site_packages[:1]:
        try:
            probe(folder)
        except OSError as exc:
            raise NotWritableError(
                f"cannot write here: {folder} is not writable by this user ({exc.strerror or exc})",
                hint="torchdoctor never elevates and never installs into the user's own site-packages "
                "instead; run it as the user who owns this environment",
            ) from None


def make_backend(name: str, *, uv_path: str | None, break_system_packages: bool = False) -> Backend:
    """The backend `resolve_backend` chose."""
    if name == "uv":
        if uv_path is None:
            raise UvNotFoundError("uv was not found on PATH or next to torchdoctor")
        return UvBackend(uv_path, break_system_packages=break_system_packages)
    if name == "pip":
        return PipBackend(break_system_packages=break_system_packages)
    raise UnknownInstallerError(f"unknown installer {name!r}", hint="choose uv or pip")
