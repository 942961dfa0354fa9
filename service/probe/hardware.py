"""What NVIDIA hardware this machine has: the probe chain, its text parsers, and hardware files.

`resolve_hardware` is the entry point. Its order, first answer wins:
  1. `--hardware FILE` (the caller's argument);
  2. the TORCHDOCTOR_HARDWARE environment variable, a path to a hardware file (support staff and
     tests state the answer, like uv's UV_CUDA_DRIVER_VERSION);
  3. `probe_hardware()`, which asks the machine (its own order is in its docstring).

A hardware file has the shape `hardware_to_json` writes, so `torchdoctor hardware --json > hw.json`
makes one. Parsers here take text and return values; they are tested on recorded real outputs in
tests/fixtures/nvidia-smi and tests/fixtures/proc-driver.
"""

from __future__ import annotations

import dataclasses
import json
import ntpath
import os
import platform as host_platform
import posixpath
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final, TypeVar

from torchdoctor.service import boundedio, proc
from torchdoctor.service.errors import HardwareFileError, SubprocessTimeoutError
from torchdoctor.service.models import (
    ComputeCapability,
    Gpu,
    Hardware,
    HardwareSource,
    Platform,
    ProbeState,
)
from torchdoctor.service.probe import nvml as nvml_wrapper
from torchdoctor.service.proc import Completed

HARDWARE_ENV: Final = "TORCHDOCTOR_HARDWARE"

# nvidia-smi can take seconds on its first call while the driver wakes the GPUs (no persistence
# daemon); a hung one must still not hang the agent.
SMI_TIMEOUT: Final = 15.0

SMI_FIELDS: Final = ("index", "name", "compute_cap", "memory.total", "driver_version")
# Drivers before the 510 branch reject compute_cap; we ask again without it.
SMI_FIELDS_OLD_DRIVER: Final = ("index", "name", "memory.total", "driver_version")

STATE_SUMMARY: Final[Mapping[ProbeState, str]] = {
    ProbeState.OK: "The NVIDIA driver and every GPU were read.",
    ProbeState.NO_GPU: "No NVIDIA GPU or driver was found.",
    ProbeState.NO_DRIVER: "An NVIDIA driver is installed but not running.",
    ProbeState.RESTART_NEEDED: nvml_wrapper.RESTART_NEEDED,
    ProbeState.PARTIAL: "Some GPUs or details could not be read.",
    ProbeState.ERROR: "The NVIDIA driver answered with an error.",
    ProbeState.DRIVER_LIBS_MISSING: "The NVIDIA driver's libraries are missing.",
}

# Which failure to report when several stages fail: the most specific one a person can act on.
_STATE_RANK: Final[Mapping[ProbeState, int]] = {
    ProbeState.OK: 0,
    ProbeState.NO_GPU: 1,
    ProbeState.PARTIAL: 2,
    ProbeState.ERROR: 3,
    ProbeState.DRIVER_LIBS_MISSING: 4,
    ProbeState.NO_DRIVER: 5,
    ProbeState.RESTART_NEEDED: 6,
}


# --------------------------------------------------------------------------------------------
# Pure parsers: text in, values out.


@dataclass(frozen=True, slots=True)
class SmiGpu:
    """One row of `nvidia-smi --query-gpu=… --format=csv`."""

    index: int | None
    name: str | None
    compute_capability: ComputeCapability | None
    memory_mib: int | None
    driver_version: str | None


_FIELD_ALIASES: Final[Mapping[str, str]] = {
    "index": "index",
    "name": "name",
    "gpu_name": "name",
    "compute_cap": "compute_cap",
    "memory.total": "memory.total",
    "driver_version": "driver_version",
    "kmd_version": "driver_version",  # 610 drivers deprecate driver_version in favour of this
}
_HEADER_CELL: Final = re.compile(r"^[a-z_][a-z0-9_.]*$", re.IGNORECASE)
_UNIT_SUFFIX: Final = re.compile(r"\s*\[[^\]]*\]$")  # "memory.total [MiB]" in a header
_MISSING: Final = frozenset({"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]"})
_VERSION: Final = re.compile(r"^\d+(?:\.\d+){1,3}$")
_CUDA_VERSION: Final = re.compile(r"^\d+\.\d+$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split(",")]


def _is_header(cells: Sequence[str]) -> bool:
    # A data row has product names and numbers; a header only has field identifiers.
    names = [_UNIT_SUFFIX.sub("", cell) for cell in cells]
    return all(_HEADER_CELL.match(n) for n in names) and any(n in _FIELD_ALIASES for n in names)


def _value(cell: str) -> str | None:
    return None if cell.strip().lower() in _MISSING else cell.strip()


def _int_value(cell: str, unit: str = "") -> int | None:
    text = _value(cell)
    if text is None:
        return None
    if unit and text.endswith(unit):
        text = text[: -len(unit)].strip()
    return int(text)


def parse_smi_csv(text: str, fields: Sequence[str] = SMI_FIELDS) -> tuple[SmiGpu, ...]:
    """Parse `nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]` output.

    With a header line, the header names the columns and `fields` is ignored; without one, the
    columns are `fields` in order. Units ("24576 MiB") and "[N/A]" are understood. Columns we do
    not use are skipped. Raises ValueError when the text is not such a table (an error message).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ()
    first = _cells(lines[0])
    if _is_header(first):
        columns = [_FIELD_ALIASES.get(_UNIT_SUFFIX.sub("", c), c) for c in first]
        rows = lines[1:]
    else:
        columns = [_FIELD_ALIASES.get(f, f) for f in fields]
        rows = lines
    gpus: list[SmiGpu] = []
    for number, line in enumerate(rows, start=1):
        cells = _cells(line)
        extra = len(cells) - len(columns)
        if extra > 0 and "name" in columns:
            # nvidia-smi does not quote: a product name with a comma spills into more cells.
            at = columns.index("name")
            cells[at : at + extra + 1] = [", ".join(cells[at : at + extra + 1])]
        if len(cells) != len(columns):
            raise ValueError(
                f"row {number} has {len(cells)} values for {len(columns)} columns: {line.strip()!r}"
            )
        row = dict(zip(columns, cells, strict=True))
        try:
            cc_text = _value(row.get("compute_cap", ""))
            gpus.append(
                SmiGpu(
                    index=_int_value(row.get("index", "")),
                    name=_value(row.get("name", "")),
                    compute_capability=ComputeCapability.parse(cc_text) if cc_text else None,
                    memory_mib=_int_value(row.get("memory.total", ""), "MiB"),
                    driver_version=_value(row.get("driver_version", "")),
                )
            )
        except ValueError as exc:
            raise ValueError(f"row {number} is not a GPU: {line.strip()!r} ({exc})") from exc
    return tuple(gpus)


# One GPU nvidia-smi could not open, printed in place of its CSV row (a GPU fallen off the bus, a
# device not passed through to a container): "Unable to determine the device handle for
# GPU0000:02:00.0: Unknown Error". Older builds say "detect" instead of "determine".
_SMI_FAILED_ROW: Final = re.compile(
    r"^\s*Unable to (?:determine|detect) the device handle for\s*(?:GPU\s*)?([0-9A-Fa-f:.]+)\s*:\s*(.*?)\s*$"
)


@dataclass(frozen=True, slots=True)
class SmiFailedGpu:
    """A GPU that `nvidia-smi --query-gpu` could not read: its PCI bus id and the reason it gave."""

    bus_id: str
    reason: str


def split_smi_failed_rows(text: str) -> tuple[str, tuple[SmiFailedGpu, ...]]:
    """(the CSV without the failed GPUs' lines, the failed GPUs), so the readable GPUs still count."""
    kept: list[str] = []
    failed: list[SmiFailedGpu] = []
    for line in text.splitlines():
        match = _SMI_FAILED_ROW.match(line)
        if match:
            failed.append(SmiFailedGpu(match.group(1), match.group(2).rstrip(".") or "unknown error"))
        else:
            kept.append(line)
    return "\n".join(kept), tuple(failed)


_SMI_CUDA: Final = re.compile(r"CUDA\s+(?:UMD\s+)?Version\s*:\s*(\d+\.\d+)\b", re.IGNORECASE)


def parse_smi_cuda_version(text: str) -> str | None:
    """The driver's CUDA version from plain `nvidia-smi` (or `-q`, or `--version`) output.

    "CUDA Version: 12.8" in the table header; "CUDA UMD Version: 13.3" from the 610 drivers on.
    None where nvidia-smi prints "ERR!" or "N/A" there, or predates the field (before ~410).
    """
    match = _SMI_CUDA.search(text)
    return match.group(1) if match else None


def parse_proc_driver_version(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version's "NVRM version:" line.

    Proprietary: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  384.98  Thu Oct 26 …";
    open modules: "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release …".
    The version is the first field, in the double-space separated line, that looks like one.
    """
    for line in text.splitlines():
        if not line.startswith("NVRM version:"):
            continue
        for chunk in re.split(r"\s{2,}", line.removeprefix("NVRM version:")):
            if _VERSION.match(chunk.strip()):
                return chunk.strip()
    return None


_WINDOWS_DRIVER: Final = re.compile(r"^\d+\.\d+\.(\d+)\.(\d+)$")


def driver_version_from_windows(text: str) -> str:
    """NVIDIA's driver version from the Windows file version Device Manager and WMI show.

    "32.0.15.7216" is driver 572.16: the last five digits of the last two fields (15|7216 ->
    57216 -> 572.16). Other versions ("572.16", "550.144.03") come back unchanged. Raises
    ValueError for a four-field version that holds no NVIDIA driver version, so "32" is never
    taken for the driver's major version.
    """
    value = text.strip()
    match = _WINDOWS_DRIVER.match(value)
    if match is None:
        return value
    digits = match.group(1) + match.group(2)
    if len(match.group(2)) != 4 or len(digits) < 5:
        raise ValueError(
            f"{value} is a Windows file version without an NVIDIA driver version in it "
            '(expected e.g. "32.0.15.7216", which is driver 572.16)'
        )
    tail = digits[-5:]
    return f"{int(tail[:3])}.{tail[3:]}"


def parse_sys_module_version(text: str) -> str | None:
    """The driver version from /sys/module/nvidia/version, which holds just "550.144.03"."""
    value = text.strip()
    return value if _VERSION.match(value) else None


DRIVER_LIBS_MISSING: Final = (
    "nvidia-smi is installed but the NVIDIA driver's libraries (libnvidia-ml.so) are missing: "
    "reinstall the driver; inside a container, start it with the GPU runtime "
    "(`docker run --gpus all`) so the driver's libraries are mounted."
)

# Messages nvidia-smi prints (on stdout or stderr, with a non-zero exit or not) instead of a table.
_SMI_FAILURES: Final[tuple[tuple[str, ProbeState, str], ...]] = (
    ("driver/library version mismatch", ProbeState.RESTART_NEEDED, nvml_wrapper.RESTART_NEEDED),
    # The nvidia-smi binary is there but the driver's user-space library is not: a container started
    # without the driver's libraries mounted, or a driver removed only in part.
    ("couldn't find libnvidia-ml.so", ProbeState.DRIVER_LIBS_MISSING, DRIVER_LIBS_MISSING),
    ("couldn't communicate with the nvidia driver", ProbeState.NO_DRIVER, nvml_wrapper.DRIVER_NOT_LOADED),
    ("driver not loaded", ProbeState.NO_DRIVER, nvml_wrapper.DRIVER_NOT_LOADED),
    ("no devices were found", ProbeState.NO_GPU, "The NVIDIA driver is running but sees no GPU."),
    (
        "insufficient permissions",
        ProbeState.ERROR,
        "This user is not allowed to query the NVIDIA driver.",
    ),
    (
        "failed to initialize nvml: unknown error",
        ProbeState.ERROR,
        "The NVIDIA driver reported an unknown error: restart the computer "
        "(inside a container, check that the GPU devices are passed through).",
    ),
)


def classify_smi_failure(text: str) -> tuple[ProbeState, str] | None:
    """Recognise an nvidia-smi error message; None when the text is not one we know."""
    lowered = text.lower()
    for needle, state, sentence in _SMI_FAILURES:
        if needle in lowered:
            return state, sentence
    return None


def _compute_cap_rejected(text: str) -> bool:
    # 'Field "compute_cap" is not a valid field to query.' (drivers before the 510 branch)
    lowered = text.lower()
    return "compute_cap" in lowered and "not a valid field" in lowered


# --------------------------------------------------------------------------------------------
# Finding nvidia-smi without running a planted one.


def _env(environ: Mapping[str, str], name: str, platform: Platform) -> str | None:
    if platform is Platform.WINDOWS:
        # Windows environment names are case-insensitive; a plain dict in a test is not.
        for key, value in environ.items():
            if key.upper() == name.upper():
                return value
        return None
    return environ.get(name)


def nvidia_smi_candidates(platform: Platform, environ: Mapping[str, str], cwd: str) -> list[str]:
    """Absolute paths to try for nvidia-smi, in order.

    Never a bare name: Windows' CreateProcess (and Python 3.11's `shutil.which` there) look in the
    current directory first, so a planted nvidia-smi.exe beside a project would run. PATH entries
    that are relative or are the current directory are skipped for the same reason.
    Windows: %SystemRoot%\\System32 first (where DCH drivers put it, the same order nvidia-ml-py
    uses for nvml.dll), then %ProgramFiles%\\NVIDIA Corporation\\NVSMI (older drivers), then PATH.
    """
    # ntpath/posixpath rather than os.path, so Windows rules can be checked on Linux too.
    paths: ModuleType
    if platform is Platform.WINDOWS:
        paths, exe = ntpath, "nvidia-smi.exe"
        system_root = (
            _env(environ, "SystemRoot", platform) or _env(environ, "WINDIR", platform) or r"C:\Windows"
        )
        program_files = _env(environ, "ProgramFiles", platform) or r"C:\Program Files"
        trusted = [
            paths.join(system_root, "System32", exe),
            paths.join(program_files, "NVIDIA Corporation", "NVSMI", exe),
        ]
    else:
        paths, exe = posixpath, "nvidia-smi"
        trusted = []
    here = paths.normcase(paths.normpath(cwd)) if cwd else None
    from_path: list[str] = []
    for raw in (_env(environ, "PATH", platform) or "").split(paths.pathsep):
        entry = raw.strip().strip('"')
        if not entry or not paths.isabs(entry):
            continue
        if paths.normcase(paths.normpath(entry)) == here:
            continue
        from_path.append(paths.join(entry, exe))
    if platform is not Platform.WINDOWS:
        from_path.append("/usr/bin/nvidia-smi")  # where distribution packages install it
    seen: set[str] = set()
    ordered: list[str] = []
    for candidate in (*trusted, *from_path):
        key = paths.normcase(paths.normpath(candidate))
        if key not in seen:
            seen.add(key)
            ordered.append(candidate)
    return ordered


# --------------------------------------------------------------------------------------------
# The probe chain.


def running_platform() -> Platform:
    if sys.platform == "win32":
        return Platform.WINDOWS
    if sys.platform == "darwin":
        return Platform.MACOS
    return Platform.LINUX


class _Trail:
    """What the failed stages said, so the final answer can carry the most useful state."""

    def __init__(self) -> None:
        self.state = ProbeState.NO_GPU
        self.notes: list[str] = []
        self.driver_version: str | None = None

    def fail(self, state: ProbeState, *notes: str) -> None:
        if _STATE_RANK[state] > _STATE_RANK[self.state]:
            self.state = state
        for note in notes:
            if note not in self.notes:
                self.notes.append(note)


def _run_smi(
    run: Callable[..., Completed], candidates: Sequence[str], args: Sequence[str]
) -> tuple[str, Completed] | None:
    """Run the first candidate that exists; None when none does."""
    for candidate in candidates:
        try:
            return candidate, run([candidate, *args], timeout=SMI_TIMEOUT)
        except OSError:
            continue  # not there (FileNotFoundError) or not runnable: try the next place
    return None


@dataclass(frozen=True, slots=True)
class _SmiAnswer:
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[Gpu, ...]
    state: ProbeState
    notes: tuple[str, ...]


def _smi_reading(
    run: Callable[..., Completed], candidates: Sequence[str], trail: _Trail
) -> _SmiAnswer | None:
    """What nvidia-smi says; None when it is absent or failed (the failure is recorded on `trail`)."""
    fields: Sequence[str] = SMI_FIELDS
    query = [f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        found = _run_smi(run, candidates, query)
        if found is None:
            return None
        smi, result = found
        notes: list[str] = []
        state = ProbeState.OK
        if not result.ok and _compute_cap_rejected(result.stdout + result.stderr):
            fields = SMI_FIELDS_OLD_DRIVER
            query = [f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
            result = run([smi, *query], timeout=SMI_TIMEOUT)
            state = ProbeState.PARTIAL
            notes.append(
                "This driver's nvidia-smi cannot report compute capability "
                "(drivers before the 510 series); update the driver."
            )
    except SubprocessTimeoutError:
        trail.fail(ProbeState.ERROR, f"nvidia-smi did not answer within {SMI_TIMEOUT:g} seconds.")
        return None
    except OSError as exc:  # it ran a moment ago; now it cannot be started at all
        trail.fail(ProbeState.ERROR, f"nvidia-smi could not be run again: {exc.strerror or exc}.")
        return None
    output = result.stdout + "\n" + result.stderr
    failure = classify_smi_failure(output)
    if failure is not None:
        trail.fail(*failure)
        return None
    table, failed = split_smi_failed_rows(result.stdout)
    try:
        rows = parse_smi_csv(table, fields)
        if not result.ok and not (failed and rows):
            raise ValueError(f"exit status {result.returncode}")
    except ValueError:
        first = next((line.strip() for line in output.splitlines() if line.strip()), "no output")
        trail.fail(ProbeState.ERROR, f"nvidia-smi failed: {first}")
        return None
    gpus, unread = _smi_gpus(rows, failed)
    if unread:
        state = ProbeState.PARTIAL
        notes.extend(unread)
    if not rows and failed:
        trail.fail(ProbeState.ERROR, *notes)
        return None
    if not rows:
        state = ProbeState.NO_GPU
        notes.append("The NVIDIA driver is running but sees no GPU.")
    driver = _smi_driver_version(rows, notes)
    cuda = None
    try:
        header = run([smi], timeout=SMI_TIMEOUT)
        cuda = parse_smi_cuda_version(header.stdout)
    except (OSError, SubprocessTimeoutError):
        pass  # reported below as unknown, the GPUs are still worth having
    if cuda is None and gpus:
        notes.append("nvidia-smi did not say which CUDA version the driver supports.")
    return _SmiAnswer(driver, cuda, tuple(gpus), state, tuple(notes))


def _smi_gpus(rows: Sequence[SmiGpu], failed: Sequence[SmiFailedGpu]) -> tuple[list[Gpu], list[str]]:
    """The GPUs nvidia-smi could read, and a note for each it could not."""
    gpus: list[Gpu] = []
    unread: list[str] = []
    for position, row in enumerate(rows):
        if row.name is None:
            unread.append(f"nvidia-smi did not name GPU {position}.")
            continue
        gpus.append(
            Gpu(
                index=row.index if row.index is not None else position,
                name=row.name,
                compute_capability=row.compute_capability,
                memory_mib=row.memory_mib,
            )
        )
    unread += [f"nvidia-smi could not read the GPU at PCI {gpu.bus_id} ({gpu.reason})." for gpu in failed]
    return gpus, unread


def _smi_driver_version(rows: Sequence[SmiGpu], notes: list[str]) -> str | None:
    """The driver version nvidia-smi reported, in NVIDIA's form (a Windows file version converted)."""
    raw = next((r.driver_version for r in rows if r.driver_version), None)
    if raw is None:
        return None
    try:
        return driver_version_from_windows(raw)
    except ValueError as exc:
        notes.append(f"nvidia-smi reported a driver version that cannot be used: {exc}.")
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _linux_driver_version(fs_root: Path) -> tuple[str, str] | None:
    """(version, file) from the loaded kernel module; uv reads the same two files in this order."""
    for relative, parse in (
        ("sys/module/nvidia/version", parse_sys_module_version),
        ("proc/driver/nvidia/version", parse_proc_driver_version),
    ):
        text = _read_text(fs_root / relative)
        version = parse(text) if text is not None else None
        if version:
            return version, "/" + relative
    return None


def normalise_machine(text: str) -> str | None:
    """`platform.machine()` as the arch lists name it: "x86_64" or "aarch64"; None for others."""
    value = text.strip().lower()
    if value in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if value in ("aarch64", "arm64"):
        return "aarch64"
    return None


def is_tegra(fs_root: Path) -> bool:
    """A Jetson: L4T writes /etc/nv_tegra_release, and the device tree names a Tegra SoC."""
    if (fs_root / "etc/nv_tegra_release").is_file():
        return True
    compatible = _read_text(fs_root / "proc/device-tree/compatible")
    return compatible is not None and "nvidia,tegra" in compatible


def probe_hardware(
    *,
    nvml: object | None = None,
    run: Callable[..., Completed] = proc.run,
    platform: Platform | None = None,
    environ: Mapping[str, str] | None = None,
    fs_root: Path = Path("/"),
    machine: str | None = None,
) -> Hardware:
    """What `probe_driver` finds, plus the host's machine (`machine` overrides
    `platform.machine()`) and, on Linux, whether it is a Jetson (Tegra)."""
    hw = probe_driver(nvml=nvml, run=run, platform=platform, environ=environ, fs_root=fs_root)
    tegra = hw.platform is Platform.LINUX and is_tegra(fs_root)
    return dataclasses.replace(hw, machine=normalise_machine(machine or host_platform.machine()), tegra=tegra)


def probe_driver(
    *,
    nvml: object | None = None,
    run: Callable[..., Completed] = proc.run,
    platform: Platform | None = None,
    environ: Mapping[str, str] | None = None,
    fs_root: Path = Path("/"),
) -> Hardware:
    """Ask this machine what NVIDIA hardware it has. Never raises for a missing or broken driver.

    In order, first full answer wins:
      1. NVML through nvidia-ml-py's `pynvml` (`nvml` injects a pynvml-like module): driver
         version, CUDA version, each GPU's name, compute capability and memory. One GPU failing
         leaves it out (state PARTIAL), the others still count.
      2. nvidia-smi, found only at trusted absolute paths (`nvidia_smi_candidates`):
         `--query-gpu=index,name,compute_cap,memory.total,driver_version
         --format=csv,noheader,nounits`, asked again without compute_cap where an old driver
         rejects it; the CUDA version from the header of plain `nvidia-smi`.
      3. Linux: the loaded kernel module's version from /sys/module/nvidia/version, then
         /proc/driver/nvidia/version (under `fs_root`). The GPUs stay unknown; the notes say so.
      4. Nothing: source "none", state NO_GPU unless a stage above said something more specific
         (restart needed, driver not running, an error).
    """
    platform = platform if platform is not None else running_platform()
    environ = environ if environ is not None else os.environ
    trail = _Trail()

    reading = nvml_wrapper.read_nvml(nvml)
    if reading.available:
        return Hardware(
            source=HardwareSource.NVML,
            platform=platform,
            driver_version=reading.driver_version,
            cuda_driver_version=reading.cuda_driver_version,
            gpus=reading.gpus,
            state=reading.state,
            notes=reading.notes,
        )
    trail.fail(reading.state, *reading.notes)
    trail.driver_version = reading.driver_version

    try:
        cwd = str(Path.cwd())
    except OSError:
        cwd = ""  # the current folder was deleted: relative PATH entries are skipped anyway
    candidates = nvidia_smi_candidates(platform, environ, cwd)
    smi = _smi_reading(run, candidates, trail)
    if smi is not None:
        return Hardware(
            source=HardwareSource.NVIDIA_SMI,
            platform=platform,
            driver_version=smi.driver_version or reading.driver_version,
            cuda_driver_version=smi.cuda_driver_version or reading.cuda_driver_version,
            gpus=smi.gpus,
            state=smi.state,
            # NVML failed yet nvidia-smi worked (e.g. nvidia-ml-py missing): say where facts came from.
            notes=("NVML could not be used, so these facts come from nvidia-smi.", *smi.notes),
        )

    if platform is Platform.LINUX:
        found = _linux_driver_version(fs_root)
        if found is not None:
            version, where = found
            trail.driver_version = trail.driver_version or version
            if trail.state is ProbeState.NO_GPU:
                trail.state = ProbeState.PARTIAL  # a driver is loaded, so "no GPU" would be wrong
            trail.fail(
                trail.state,
                f"The NVIDIA kernel driver {version} is loaded ({where}), but its GPUs could not be listed.",
            )
    return Hardware(
        source=HardwareSource.NONE,
        platform=platform,
        driver_version=trail.driver_version,
        cuda_driver_version=reading.cuda_driver_version,
        gpus=(),
        state=trail.state,
        notes=tuple(trail.notes),
    )


# --------------------------------------------------------------------------------------------
# Hardware files: JSON in the shape of DESIGN.md's `hardware`, plus `state` and `notes`.

_TOP_KEYS: Final = (
    "source",
    "platform",
    "driver_version",
    "cuda_driver_version",
    "gpus",
    "state",
    "notes",
    "machine",
    "tegra",
)
_GPU_KEYS: Final = ("index", "name", "compute_capability", "memory_mib")


def hardware_to_json(hw: Hardware) -> dict[str, object]:
    """DESIGN.md's `hardware` object plus `state` and `notes`; a valid hardware file as is."""
    return {
        "source": hw.source.value,
        "platform": hw.platform.value,
        "driver_version": hw.driver_version,
        "cuda_driver_version": hw.cuda_driver_version,
        "gpus": [
            {
                "index": gpu.index,
                "name": gpu.name,
                "compute_capability": str(gpu.compute_capability) if gpu.compute_capability else None,
                "memory_mib": gpu.memory_mib,
            }
            for gpu in hw.gpus
        ],
        "state": hw.state.value,
        "notes": list(hw.notes),
        "machine": hw.machine,
        "tegra": hw.tegra,
    }


def _bad(where: str, field: str, expected: str, value: object) -> HardwareFileError:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return HardwareFileError(
        f"{where}: {field}: expected {expected}, got {shown}",
        hint="`torchdoctor hardware --json` writes a valid file to start from",
    )


def _check_keys(obj: Mapping[str, object], allowed: Sequence[str], where: str, prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            label = f"{prefix}.{key}" if prefix else key
            raise HardwareFileError(
                f"{where}: {label}: unknown field (known fields: {', '.join(allowed)})",
                hint="a misspelt field would otherwise be ignored silently",
            )


_E = TypeVar("_E", HardwareSource, Platform, ProbeState)


def _enum(kind: type[_E], obj: Mapping[str, object], key: str, where: str) -> _E | None:
    value = obj.get(key)
    if value is None:
        return None
    choices = [member.value for member in kind]
    if not isinstance(value, str) or value not in choices:
        raise _bad(where, key, "one of " + ", ".join(f'"{c}"' for c in choices), value)
    return kind(value)


def _optional_version(
    obj: Mapping[str, object], key: str, pattern: re.Pattern[str], example: str, where: str
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    # A JSON number would lose trailing zeros ("560.70" -> 560.7), so only strings are accepted.
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise _bad(where, key, f'a version string like "{example}"', value)
    return value.strip()


def _driver_version_field(obj: Mapping[str, object], where: str) -> str | None:
    """`driver_version`, with the Windows file-version form converted (32.0.15.7216 -> 572.16)."""
    driver = _optional_version(obj, "driver_version", _VERSION, "572.16", where)
    if driver is None:
        return None
    try:
        return driver_version_from_windows(driver)
    except ValueError as exc:
        raise HardwareFileError(
            f"{where}: driver_version: {exc}",
            hint='give the version nvidia-smi prints, like "572.16"',
        ) from None


def _optional_count(gpu: Mapping[str, object], key: str, label: str, where: str) -> int | None:
    value = gpu.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(where, label, "a whole number of 0 or more", value)
    return value


def _gpu_from_json(item: object, position: int, where: str) -> Gpu:
    label = f"gpus[{position}]"
    if not isinstance(item, dict):
        raise _bad(where, label, "an object with name and compute_capability", item)
    _check_keys(item, _GPU_KEYS, where, label)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad(where, f"{label}.name", 'the GPU\'s name like "NVIDIA GeForce RTX 4090"', name)
    if "compute_capability" not in item:
        raise HardwareFileError(
            f'{where}: {label}.compute_capability: missing (write "8.6", or null when unknown)'
        )
    cc_value = item["compute_capability"]
    cc: ComputeCapability | None = None
    if cc_value is not None:
        if not isinstance(cc_value, str):
            raise _bad(where, f"{label}.compute_capability", '"X.Y" like "8.6"', cc_value)
        try:
            cc = ComputeCapability.parse(cc_value)
        except ValueError:
            raise _bad(where, f"{label}.compute_capability", '"X.Y" like "8.6"', cc_value) from None
    index = _optional_count(item, "index", f"{label}.index", where)
    memory = _optional_count(item, "memory_mib", f"{label}.memory_mib", where)
    return Gpu(
        index=index if index is not None else position,
        name=name.strip(),
        compute_capability=cc,
        memory_mib=memory,
    )


def hardware_from_json(obj: object, *, where: str) -> Hardware:
    """Validate a hardware file's JSON value; `where` names it in the one-sentence error.

    `source`, `platform` and every GPU field but `name` and `compute_capability` may be left out;
    no `gpus` means no NVIDIA GPU; `platform` defaults to the running OS. The result's source is
    always FILE, so nothing downstream mistakes it for a real probe.
    """
    if not isinstance(obj, dict):
        raise _bad(where, "top level", "a JSON object", obj)
    _check_keys(obj, _TOP_KEYS, where, "")
    _enum(HardwareSource, obj, "source", where)  # checked for typos; the answer is FILE regardless
    platform = _enum(Platform, obj, "platform", where) or running_platform()
    driver = _driver_version_field(obj, where)
    cuda = _optional_version(obj, "cuda_driver_version", _CUDA_VERSION, "12.8", where)
    raw_gpus = obj.get("gpus")
    if raw_gpus is None:
        raw_gpus = []
    if not isinstance(raw_gpus, list):
        raise _bad(where, "gpus", "a list of GPUs", raw_gpus)
    gpus = tuple(_gpu_from_json(item, position, where) for position, item in enumerate(raw_gpus))
    indices = [gpu.index for gpu in gpus]
    duplicate = next((i for i in indices if indices.count(i) > 1), None)
    if duplicate is not None:
        raise HardwareFileError(f"{where}: gpus: index {duplicate} appears more than once")
    state = _enum(ProbeState, obj, "state", where)
    if state is None:
        state = ProbeState.OK if gpus else ProbeState.NO_GPU
    raw_notes = obj.get("notes")
    if raw_notes is None:
        raw_notes = []
    if not isinstance(raw_notes, list) or not all(isinstance(n, str) for n in raw_notes):
        raise _bad(where, "notes", "a list of sentences", raw_notes)
    machine = obj.get("machine")
    if machine is not None and (not isinstance(machine, str) or normalise_machine(machine) is None):
        raise _bad(where, "machine", '"x86_64" or "aarch64"', machine)
    tegra = obj.get("tegra", False)
    if not isinstance(tegra, bool):
        raise _bad(where, "tegra", "true or false", tegra)
    return Hardware(
        source=HardwareSource.FILE,
        platform=platform,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=gpus,
        state=state,
        notes=tuple(raw_notes),
        tegra=tegra,
        machine=normalise_machine(machine) if machine is not None else None,
    )


def _decode(data: bytes) -> str:
    # PowerShell 5's `>` writes UTF-16 with a byte order mark; Notepad may add a UTF-8 one.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def _load(path: Path, label: str) -> Hardware:
    try:
        data = boundedio.read_bytes(path, what=label, error=HardwareFileError)
    except FileNotFoundError:
        raise HardwareFileError(f"{label} {path} does not exist") from None
    except IsADirectoryError:
        raise HardwareFileError(f"{label} {path} is a folder, not a file") from None
    except OSError as exc:
        raise HardwareFileError(f"{label} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        raise HardwareFileError(f"{label} {path} is not text (expected UTF-8 JSON)") from None
    try:
        obj = boundedio.loads_json(text, what=f"{label} {path}", error=HardwareFileError)
    except json.JSONDecodeError as exc:
        raise HardwareFileError(
            f"{label} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    return hardware_from_json(obj, where=f"{label} {path}")


def load_hardware_file(path: Path) -> Hardware:
    """Read a hardware file (source FILE); HardwareFileError with one sentence when it is bad."""
    return _load(path, "hardware file")


def resolve_hardware(hardware_file: Path | None) -> Hardware:
    """The hardware to use: `hardware_file`, else $TORCHDOCTOR_HARDWARE, else `probe_hardware()`."""
    if hardware_file is not None:
        return load_hardware_file(hardware_file)
    from_env = os.environ.get(HARDWARE_ENV, "").strip()
    if from_env:
        return _load(Path(from_env), f"hardware file (from {HARDWARE_ENV})")
    return probe_hardware()
