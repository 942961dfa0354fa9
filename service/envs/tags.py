"""Wheel tags of a *target* environment: the interpreter we are about to change, not the one we run in.

`packaging.tags.sys_tags()` describes the running interpreter. torchdoctor runs on its own Python
3.11+ and repairs environments that may be Python 3.8 on another libc, free-threaded, or 32-bit, so
it learns the target's facts once, in a subprocess (`interpreter_facts`), and computes the tags from
those facts with pure code (`tags_for`). The rules mirror `packaging.tags` (26.x): the parts that
take explicit arguments (`cpython_tags`, `generic_tags`, `compatible_tags`, `mac_platforms`) are
called directly; the parts that probe the running system (CPython ABI flags, manylinux, musllinux)
are re-done here from the facts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags, mac_platforms

from torchdoctor.service import proc
from torchdoctor.service.errors import InterpreterError, SubprocessTimeoutError

# The script runs inside the target interpreter, so it must be stdlib-only and parse on old Pythons
# (3.6+: no walrus, no positional-only parameters, no `subprocess.run(capture_output=...)`).
# `-I` keeps the environment's PYTHON* variables, user site and current folder out of the answer.
FACTS_MARKER: Final = "TORCHDOCTOR-FACTS "
FACTS_SCRIPT: Final = r"""
import json, os, platform, struct, sys, sysconfig

def cv(name):
    try:
        return sysconfig.get_config_var(name)
    except Exception:
        return None

def glibc():
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
        if text and text.startswith("glibc "):
            return text.split()[1]
    except (AttributeError, OSError, ValueError):
        pass
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        func = ctypes.CDLL(None).gnu_get_libc_version
        func.restype = ctypes.c_char_p
        value = func()
        return value.decode("ascii") if isinstance(value, bytes) else value
    except Exception:
        return None

def musl():
    # The musl loader this process runs under prints its version when started without arguments.
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = set(line.split()[-1] for line in maps if "ld-musl-" in line)
    except Exception:
        return None
    import subprocess
    for loader in sorted(paths):
        try:
            out = subprocess.run([loader], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=5).stderr
        except Exception:
            continue
        lines = [l.strip() for l in out.splitlines() if l.strip()]
        if len(lines) >= 2 and lines[0].startswith("musl") and lines[1].startswith("Version "):
            return lines[1].split()[1]
    return None

def mac():
    if sys.platform != "darwin":
        return None
    version = platform.mac_ver()[0]
    if version.startswith("10.16"):
        # Built against an old SDK, Python reports 10.16 instead of the real macOS version.
        import subprocess
        try:
            version = subprocess.run(
                [sys.executable, "-sS", "-c", "import platform; print(platform.mac_ver()[0])"],
                stdout=subprocess.PIPE, universal_newlines=True, timeout=10,
                env={"SYSTEM_VERSION_COMPAT": "0"}).stdout.strip() or version
        except Exception:
            pass
    return version or None

def debug_build():
    from importlib.machinery import EXTENSION_SUFFIXES
    with_debug = cv("Py_DEBUG")
    if with_debug is not None:
        return bool(with_debug)
    return hasattr(sys, "gettotalrefcount") or "_d.pyd" in EXTENSION_SUFFIXES

pymalloc = cv("WITH_PYMALLOC")
facts = {
    "executable": sys.executable,
    "version": list(sys.version_info[:3]),
    "version_text": platform.python_version(),
    "implementation": sys.implementation.name,
    "py_version_nodot": cv("py_version_nodot"),
    "abiflags": getattr(sys, "abiflags", ""),
    "gil_disabled": bool(cv("Py_GIL_DISABLED")),
    "debug": debug_build(),
    "pymalloc": bool(pymalloc) or pymalloc is None,
    "ext_suffix": cv("EXT_SUFFIX"),
    "platform": sysconfig.get_platform(),
    "system": platform.system(),
    "machine": platform.machine(),
    "pointer_bits": struct.calcsize("P") * 8,
    "glibc": glibc(),
    "musl": None,
    "mac_version": mac(),
    "windows_arch": (os.environ.get("PROCESSOR_ARCHITEW6432") or os.environ.get("PROCESSOR_ARCHITECTURE"))
                    if sys.platform == "win32" else None,
}
if facts["glibc"] is None:
    facts["musl"] = musl()
sys.stdout.write("TORCHDOCTOR-FACTS " + json.dumps(facts) + "\n")
"""

# packaging.tags.INTERPRETER_SHORT_NAMES, repeated so the mapping is visible where it is used.
_SHORT_NAMES: Final[Mapping[str, str]] = {
    "python": "py",
    "cpython": "cp",
    "pypy": "pp",
    "ironpython": "ip",
    "jython": "jy",
}
# packaging/_manylinux.py `_ALLOWED_ARCHS`, plus armv7l and i686, which packaging admits after
# reading the interpreter's ELF header (hard-float ARM, 32-bit x86). We assume the usual builds
# rather than read the target's binary: soft-float armv7l CPython does not meet PyTorch anyway.
_MANYLINUX_ARCHS: Final = frozenset(
    {"x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64", "riscv64", "armv7l", "i686"}
)
_LEGACY_MANYLINUX: Final[Mapping[tuple[int, int], str]] = {
    (2, 17): "manylinux2014",
    (2, 12): "manylinux2010",
    (2, 5): "manylinux1",
}
_VERSION_RE: Final = re.compile(r"^(\d+)\.(\d+)")


# The one error for "the environment's python did not tell us what it is" (kept under its old name).
InterpreterProbeError = InterpreterError
_SHOWN_OUTPUT: Final = 160  # characters of an interpreter's stray output quoted in a message


class Runner(Protocol):
    """`proc.run`'s shape, so tests can stand in for the subprocess boundary."""

    def __call__(self, argv: Sequence[str | Path], *, timeout: float) -> proc.Completed: ...


@dataclass(frozen=True, slots=True)
class InterpreterFacts:
    """What decides which wheels install into an interpreter, as that interpreter reported it."""

    executable: str
    version: tuple[int, int, int]
    version_text: str  # platform.python_version(): "3.13.0", "3.14.0rc1"
    implementation: str  # sys.implementation.name: "cpython", "pypy"
    platform: str  # sysconfig.get_platform(): "linux-x86_64", "win-amd64", "macosx-11.0-arm64"
    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    machine: str  # platform.machine(): "x86_64", "AMD64", "arm64", "aarch64"
    pointer_bits: int = 64
    py_version_nodot: str | None = None  # sysconfig "py_version_nodot"
    abiflags: str = ""
    gil_disabled: bool = False  # free-threaded build (3.13t)
    debug: bool = False
    pymalloc: bool = True  # only changes the ABI tag before 3.8 ("cp37m")
    ext_suffix: str | None = None
    glibc: str | None = None  # "2.36"; None on musl, Windows, macOS
    musl: str | None = None  # "1.2.4"
    mac_version: str | None = None  # "14.5"
    windows_arch: str | None = None  # the machine's architecture ("AMD64", "ARM64"), not the interpreter's

    @property
    def python_version(self) -> str:
        """The text to hold against `Requires-Python`: "3.12.1"."""
        return self.version_text

    @property
    def interpreter_short_name(self) -> str:
        return _SHORT_NAMES.get(self.implementation, self.implementation)

    @property
    def version_nodot(self) -> str:
        return self.py_version_nodot or f"{self.version[0]}{self.version[1]}"

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> InterpreterFacts:
        """Build from the facts script's JSON; raises ValueError naming the first bad field."""
        version = data.get("version")
        if (
            not isinstance(version, list)
            or len(version) != 3
            or not all(isinstance(part, int) for part in version)
        ):
            raise ValueError(f"bad 'version': {version!r}")
        return cls(
            executable=_text(data, "executable"),
            version=(version[0], version[1], version[2]),
            version_text=_text(data, "version_text"),
            implementation=_text(data, "implementation"),
            platform=_text(data, "platform"),
            system=_text(data, "system"),
            machine=_text(data, "machine"),
            pointer_bits=_integer(data, "pointer_bits"),
            py_version_nodot=_optional_text(data, "py_version_nodot"),
            abiflags=_optional_text(data, "abiflags") or "",
            gil_disabled=_flag(data, "gil_disabled"),
            debug=_flag(data, "debug"),
            pymalloc=_flag(data, "pymalloc"),
            ext_suffix=_optional_text(data, "ext_suffix"),
            glibc=_optional_text(data, "glibc"),
            musl=_optional_text(data, "musl"),
            mac_version=_optional_text(data, "mac_version"),
            windows_arch=_optional_text(data, "windows_arch"),
        )


def _text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"bad {key!r}: {value!r}")
    return value


def _optional_text(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # py_version_nodot is an int in a few sysconfig builds
    if not isinstance(value, str):
        raise ValueError(f"bad {key!r}: {value!r}")
    return value


def _integer(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"bad {key!r}: {value!r}")
    return value


def _flag(data: Mapping[str, object], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"bad {key!r}: {value!r}")
    return value


def interpreter_facts(python: Path, *, run: Runner = proc.run, timeout: float = 10.0) -> InterpreterFacts:
    """Ask the interpreter at `python` what it is.

    Runs `PYTHON -I -c FACTS_SCRIPT` (stdlib only, works on Python 3.6+) with a timeout and reads
    the one JSON line it prints. Raises InterpreterError, naming the interpreter and never quoting
    the script, when the interpreter cannot be started, does not answer within `timeout`, fails,
    or prints something else.
    """
    by_hand = f"run `{python} --version` by hand to see whether it starts"
    try:
        done = run([python, "-I", "-c", FACTS_SCRIPT], timeout=timeout)
    except OSError as exc:
        raise InterpreterError(
            f"Could not start the interpreter {python}: {exc.strerror or exc}.",
            hint="check that the environment still exists and its python runs",
        ) from exc
    except SubprocessTimeoutError as exc:
        raise InterpreterError(
            f"The interpreter {python} did not answer within {timeout:g} s.",
            hint=f"it may be hung (a sitecustomize, a network drive, an antivirus scan); {by_hand}",
        ) from exc
    if not done.ok:
        if "Unknown option" in done.stderr:  # Python 2 has no -I
            raise InterpreterError(
                f"The interpreter {python} is too old for torchdoctor (it has no -I option).",
                hint="PyTorch needs Python 3; so does torchdoctor's probe (3.6 or newer)",
            )
        detail = _telling_line(done.stderr)
        said = f": {detail}" if detail else " and printed nothing on stderr"
        raise InterpreterError(
            f"The interpreter {python} failed (exit status {done.returncode}){said}.",
            hint=by_hand,
        )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(FACTS_MARKER)), None)
    if line is None:
        printed = _telling_line(done.stdout)
        said = f"it printed {printed!r}" if printed else "it printed nothing"
        raise InterpreterError(
            f"The interpreter {python} did not describe itself ({said}).",
            hint="a sitecustomize, a wrapper script or a very old Python may be in the way; "
            f"Python 3.6 or newer is needed; {by_hand}",
        )
    try:
        data = json.loads(line[len(FACTS_MARKER) :])
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return InterpreterFacts.from_mapping(data)
    except ValueError as exc:
        raise InterpreterError(
            f"The interpreter {python} described itself in a way we cannot read: "
            f"{_shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}."
        ) from exc


def _shorten(text: str) -> str:
    """One line of someone else's output, fit to quote: printable, and at most _SHOWN_OUTPUT long."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return clean if len(clean) <= _SHOWN_OUTPUT else clean[: _SHOWN_OUTPUT - 3] + "..."


def _telling_line(text: str) -> str:
    """The line of an interpreter's output that says what went wrong.

    A Python traceback says it on its last line ("ModuleNotFoundError: No module named 'encodings'");
    anything else (a wrapper script, the loader) on its first. Never the "Traceback" header itself.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    telling = lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]
    return _shorten(telling.rstrip("."))


def _normalize(text: str) -> str:
    # packaging.tags._normalize_string
    return text.replace(".", "_").replace("-", "_").replace(" ", "_")


def _parse_two(text: str | None) -> tuple[int, int] | None:
    match = _VERSION_RE.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _manylinux_platforms(archs: Sequence[str], glibc: tuple[int, int]) -> Iterator[str]:
    """packaging/_manylinux.py `platform_tags`, with the glibc version taken from the facts.

    Newest first, down to glibc 2.5 on x86_64/i686 (manylinux1) and 2.17 elsewhere (manylinux2014),
    each legacy alias right after the `manylinux_2_N` tag it stands for.
    """
    if not any(arch in _MANYLINUX_ARCHS for arch in archs):
        return
    major, newest = glibc
    if major != 2:
        return  # no glibc 3 exists; packaging would walk 2.50 down for it, we decline to guess
    oldest = 5 if set(archs) & {"x86_64", "i686"} else 17
    for arch in archs:
        for minor in range(newest, oldest - 1, -1):
            yield f"manylinux_2_{minor}_{arch}"
            legacy = _LEGACY_MANYLINUX.get((2, minor))
            if legacy is not None:
                yield f"{legacy}_{arch}"


def _linux_platforms(facts: InterpreterFacts) -> list[str]:
    linux = _normalize(facts.platform)
    if not linux.startswith("linux_"):
        return [linux]
    if facts.pointer_bits == 32:
        # A 32-bit interpreter on a 64-bit kernel still reports the kernel's machine.
        linux = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv8l"}.get(linux, linux)
    arch = linux.split("_", 1)[1]
    archs = ["armv8l", "armv7l"] if arch == "armv8l" else [arch]
    # packaging >= 26.3 orders the native linux_* tags first.
    platforms = [f"linux_{a}" for a in archs]
    glibc = _parse_two(facts.glibc)
    if glibc is not None:
        platforms += _manylinux_platforms(archs, glibc)
    musl = _parse_two(facts.musl)
    if musl is not None:
        platforms += [f"musllinux_{musl[0]}_{m}_{a}" for a in archs for m in range(musl[1], -1, -1)]
    return platforms


def _mac_arch(facts: InterpreterFacts) -> str:
    if facts.pointer_bits != 32:
        return facts.machine
    return "ppc" if facts.machine.startswith("ppc") else "i386"


def platform_tags_for(facts: InterpreterFacts) -> list[str]:
    """The platform part of the tags, best first."""
    if facts.system == "Darwin":
        mac = _parse_two(facts.mac_version)
        if mac is None:
            return [_normalize(facts.platform)]
        return list(mac_platforms(mac, _mac_arch(facts)))
    if facts.system == "Linux":
        return _linux_platforms(facts)
    # Windows ("win_amd64", "win32", "win_arm64") and anything else: sysconfig's platform as is.
    return [_normalize(facts.platform)]


def _cpython_abis(facts: InterpreterFacts) -> list[str]:
    """packaging.tags._cpython_abis from the facts: "cp312", "cp313t", "cp37m", "cp312d"."""
    major, minor = facts.version[0], facts.version[1]
    nodot = f"{major}{minor}"
    threading = "t" if (major, minor) >= (3, 13) and facts.gil_disabled else ""
    debug = "d" if facts.debug else ""
    pymalloc = "m" if (major, minor) < (3, 8) and facts.pymalloc else ""
    abis = [f"cp{nodot}{threading}{debug}{pymalloc}"]
    if (major, minor) >= (3, 8) and debug:
        abis.append(f"cp{nodot}{threading}")  # debug builds also load normal extension modules
    return abis


def _generic_abis(facts: InterpreterFacts) -> list[str]:
    """packaging.tags._generic_abi from the facts' EXT_SUFFIX (PyPy, GraalPy, ...)."""
    suffix = facts.ext_suffix or ""
    parts = suffix.split(".")
    if len(parts) < 3:
        return _cpython_abis(facts) if facts.implementation == "cpython" else []
    soabi = parts[1]
    if soabi.startswith("cpython"):
        pieces = soabi.split("-")
        abi = "cp" + pieces[1] if len(pieces) > 1 else soabi
    elif soabi.startswith("cp"):
        abi = soabi.split("-")[0]
    elif soabi.startswith("pypy"):
        abi = "-".join(soabi.split("-")[:2])
    elif soabi.startswith("graalpy"):
        abi = "-".join(soabi.split("-")[:3])
    else:
        abi = soabi
    return [_normalize(abi)] if abi else []


def tags_for(facts: InterpreterFacts) -> list[Tag]:
    """Every tag a wheel may carry to install into the interpreter the facts describe, best first.

    Equals `list(packaging.tags.sys_tags())` run inside that interpreter (with packaging >= 26.3;
    older packaging orders the same set differently).
    """
    python_version = (facts.version[0], facts.version[1])
    platforms = platform_tags_for(facts)
    short = facts.interpreter_short_name
    tags: list[Tag] = []
    if short == "cp":
        tags += cpython_tags(python_version, _cpython_abis(facts), platforms)
        interpreter: str | None = f"cp{facts.version_nodot}"
    else:
        tags += generic_tags(f"{short}{facts.version_nodot}", _generic_abis(facts), platforms)
        interpreter = "pp3" if short == "pp" else None
    tags += compatible_tags(python_version, interpreter, platforms)
    return tags
