"""The facts torchdoctor decides with, loaded from `service/facts/data/knowledge.json`.

The data file holds, each entry with its source: driver floors per CUDA major (minor-version
compatibility) and per CUDA version (the toolkit's own driver), per torch release its published
variants, Python versions and paired torchvision/torchaudio, and per (variant, release range, OS)
the compiled GPU architectures. A user file (`paths.knowledge_override_file()`) can add or replace
entries without waiting for a release of torchdoctor.

Everything is validated when loaded: a malformed entry is a KnowledgeError naming the entry, not a
KeyError in the middle of a diagnosis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Final, cast

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from torchdoctor.service import boundedio, paths
from torchdoctor.service.errors import KnowledgeError
from torchdoctor.service.models import ComputeCapability, Platform

OSES: Final = ("linux", "windows")
MACHINES: Final = ("x86_64", "aarch64")
_CUDA_KEY_RE: Final = re.compile(r"^\d+\.\d+$")
_MINOR_KEY_RE: Final = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True, slots=True, eq=False)
class DriverVersion:
    """An NVIDIA driver version: compared numerically, shown as NVIDIA writes it ("580.95.05")."""

    text: str
    key: Version

    @classmethod
    def parse(cls, text: str) -> DriverVersion:
        """Raises ValueError for anything that is not a dotted number."""
        try:
            return cls(text.strip(), Version(text.strip()))
        except InvalidVersion:
            raise ValueError(f"not a driver version: {text!r}") from None

    def __lt__(self, other: DriverVersion) -> bool:
        return self.key < other.key

    def __le__(self, other: DriverVersion) -> bool:
        return self.key <= other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DriverVersion) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class DriverFloor:
    """The drivers a CUDA version needs on one OS.

    `toolkit`: the driver bundled with that toolkit; at or above it the build runs fully (including
    JIT of its PTX). `mvc`: the oldest driver that runs it through minor-version compatibility.
    """

    cuda: str
    toolkit: DriverVersion | None
    mvc: DriverVersion | None


@dataclass(frozen=True, slots=True)
class ArchList:
    codes: tuple[ComputeCapability, ...]  # SASS compiled into the wheel
    ptx: ComputeCapability | None  # the arch whose PTX is embedded, if any
    source: str
    inferred: bool = False  # True when the release is not in the data and this is the variant's newest list

    def describe(self) -> str:
        parts = [f"sm_{c.sm}" for c in self.codes]
        if self.ptx is not None:
            parts.append(f"compute_{self.ptx.sm} (PTX)")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Release:
    minor: str  # "2.7"
    variants: tuple[str, ...]
    python: tuple[str, ...]
    pypi_linux: str | None
    # The paired torchvision minor line, "0.22"; None while no torchvision is released for this
    # torch line: then the wheels' own `Requires-Dist: torch...` decide (a py3-none torchvision
    # such as 0.29.2 declares torch>=2.14.0 and serves later releases too).
    torchvision: str | None
    torchaudio: str  # paired torchaudio minor line, "2.7"
    source: str
    linux_only: tuple[str, ...] = ()  # variants published for Linux only (2.14's cu134)

    def variants_for(self, platform: Platform) -> tuple[str, ...]:
        """The variants published for `platform`'s wheels."""
        if platform is Platform.LINUX:
            return self.variants
        return tuple(v for v in self.variants if v not in self.linux_only)


class Coverage(StrEnum):
    SASS = "sass"  # native code for this GPU is in the wheel
    PTX = "ptx"  # only through JIT of embedded PTX (needs the toolkit's driver)
    NONE = "none"


@dataclass(frozen=True, slots=True)
class _ArchEntry:
    variant: str
    torch: SpecifierSet
    os: str  # "linux", "windows" or "any"
    arch: ArchList
    machine: str = "x86_64"  # aarch64 wheels are built for another list (build_env_setup.py)


@dataclass(frozen=True, slots=True)
class Knowledge:
    cuda_majors: Mapping[int, tuple[Mapping[str, DriverVersion], ComputeCapability]]
    cuda: Mapping[str, tuple[Mapping[str, DriverVersion | None], ComputeCapability]]
    releases: Mapping[str, Release]
    patch_pairs: Mapping[str, Mapping[str, str]]
    torchaudio_stable_abi_from: Version
    own_code_only: frozenset[ComputeCapability]
    not_runnable: Mapping[ComputeCapability, frozenset[ComputeCapability]]
    also_runs_on: Mapping[ComputeCapability, frozenset[ComputeCapability]]
    arch_entries: tuple[_ArchEntry, ...]
    retrieved: str = ""  # the date the data was last checked against its sources

    # --- what this copy knows ------------------------------------------------------------------

    def newest_release(self) -> str | None:
        return max(self.releases, key=Version) if self.releases else None

    def newest_cuda(self) -> str | None:
        """The newest CUDA version the driver table knows ("13.4")."""
        return max(self.cuda, key=lambda c: tuple(int(p) for p in c.split("."))) if self.cuda else None

    # --- drivers -------------------------------------------------------------------------------

    def driver_floor(self, cuda: str, platform: Platform) -> DriverFloor:
        """Driver floors for a build's CUDA version ("12.8") on `platform`."""
        os_key = _os_key(platform)
        major = _cuda_major(cuda)
        mvc = None
        if major in self.cuda_majors:
            mvc = self.cuda_majors[major][0].get(os_key)
        toolkit: DriverVersion | None = None
        if cuda in self.cuda:
            floors = self.cuda[cuda][0]
            toolkit = floors.get(os_key)
            linux = floors.get("linux")
            if toolkit is None and os_key == "windows" and linux is not None:
                # NVIDIA publishes no Windows toolkit driver from CUDA 13 on. Windows drivers are
                # numbered by branch (R580: 580.88 ... 581.x), and a branch supports the CUDA minor
                # of its Linux GA driver, so the branch number is the floor: an R580 Windows
                # driver supports 13.0 and runs 13.2 only through minor-version compatibility.
                toolkit = DriverVersion.parse(str(linux.key.release[0]))
        # toolkit None: no number says this driver supports the CUDA minor fully (a CUDA version
        # the data does not know, or 13.4 whose GA driver was not found); `fit` then trusts only
        # the driver's own CUDA version.
        return DriverFloor(cuda=cuda, toolkit=toolkit, mvc=mvc)

    def cuda_min_arch(self, cuda: str) -> ComputeCapability | None:
        """The oldest GPU any toolkit of this CUDA major can build for (CUDA 13 dropped < 7.5)."""
        entry = self.cuda_majors.get(_cuda_major(cuda))
        return entry[1] if entry else None

    def cuda_max_arch(self, cuda: str) -> ComputeCapability | None:
        """The newest GPU this toolkit can build native code for."""
        entry = self.cuda.get(cuda)
        return entry[1] if entry else None

    # --- releases ------------------------------------------------------------------------------

    def release(self, version: str) -> Release | None:
        """The release line of a torch version: "2.7.1+cu128" -> the 2.7 entry, or None if unknown."""
        return self.releases.get(release_minor(version))

    def arch_list(
        self, version: str, variant: str, platform: Platform, machine: str | None = None
    ) -> ArchList | None:
        """The GPUs a (torch version, variant) wheel was compiled for on `platform` and `machine`
        ("x86_64", the default, or "aarch64": `machine_of_tags`).

        Entries match the full release ("==2.13.0" is the one release that shipped PTX), so a
        bare minor ("2.13") is read as its .0 release. A release the data does not know, or an
        aarch64 wheel without its own list, gets the nearest list marked `inferred`, so callers
        can avoid alarms the data cannot back. None: nothing is known.
        """
        # Nightlies and release candidates count as their release (2.11.0.dev1 as 2.11.0).
        parts = (*_public(version).release, 0, 0)[:3]
        release = Version(".".join(str(p) for p in parts))
        known = release_minor(version) in self.releases
        os_key = _os_key(platform)
        wanted_machine = machine if machine in MACHINES else "x86_64"
        candidates = [e for e in self.arch_entries if e.variant == variant]
        if not candidates:
            return None
        # Prefer this machine's and OS's list; fall back to the other OS's, which differ only in
        # small ways, and then to x86_64's for an aarch64 wheel (marked inferred).
        machines = (wanted_machine,) if wanted_machine == "x86_64" else (wanted_machine, "x86_64")
        for machine_choice in machines:
            for os_choice in (os_key, "any", *[o for o in OSES if o != os_key]):
                matching = [
                    e
                    for e in candidates
                    if e.machine == machine_choice and e.os == os_choice and release in e.torch
                ]
                if matching:
                    arch = matching[0].arch
                    if known and machine_choice == wanted_machine:
                        return arch
                    return ArchList(arch.codes, arch.ptx, arch.source, inferred=True)
        return None

    # --- architectures -------------------------------------------------------------------------

    def sass_runs_on(self, code: ComputeCapability, device: ComputeCapability) -> bool:
        """Whether native code for `code` runs on a `device` GPU (PyTorch's DEVICE_REQUIREMENT)."""
        if device == code:
            return True
        if device in self.also_runs_on.get(code, frozenset()):
            return True
        if device in self.own_code_only or device in self.not_runnable.get(code, frozenset()):
            return False
        return device.major == code.major and device.minor >= code.minor

    def coverage(self, arch: ArchList, device: ComputeCapability, cuda: str | None) -> Coverage:
        """How a wheel with `arch` can run on `device`.

        PTX counts only for a device at or above the PTX arch and no newer than the build's toolkit
        knows: a toolkit's math libraries (cuBLAS, cuDNN) carry no kernels for GPUs released after it,
        so e.g. Windows cu118's compute_37 PTX does not make an RTX 50 work.
        """
        if any(self.sass_runs_on(code, device) for code in arch.codes):
            return Coverage.SASS
        if arch.ptx is not None and device >= arch.ptx and device not in self.own_code_only:
            newest = self.cuda_max_arch(cuda) if cuda else None
            if newest is None or device <= newest:
                return Coverage.PTX
        return Coverage.NONE

    # --- companions ----------------------------------------------------------------------------

    def paired_patch(self, torch_release: str, companion: str) -> str | None:
        return self.patch_pairs.get(torch_release, {}).get(companion)

    def torchaudio_is_stable_abi(self, torchaudio_version: str) -> bool:
        return _public(torchaudio_version) >= self.torchaudio_stable_abi_from


def release_minor(version: str) -> str:
    """ "2.7.1+cu128" -> "2.7"; "2.10.0.dev20250101" -> "2.10"."""
    v = _public(version)
    return f"{v.major}.{v.minor}"


def _public(version: str) -> Version:
    try:
        return Version(version.split("+", 1)[0])
    except InvalidVersion:
        raise ValueError(f"not a version: {version!r}") from None


def _cuda_major(cuda: str) -> int:
    return int(cuda.split(".", 1)[0])


def _os_key(platform: Platform) -> str:
    # macOS has no CUDA builds; its questions are answered like Linux's (which only matters for CPU).
    return "windows" if platform is Platform.WINDOWS else "linux"


# --- loading and validation ----------------------------------------------------------------------


class _Reader:
    """Typed access to untrusted JSON that reports the path of whatever is wrong."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, problem: str) -> KnowledgeError:
        return KnowledgeError(
            f"{self.origin}: {where}: {problem}",
            hint="fix or remove the entry; the built-in data is used for everything else",
        )

    def obj(self, value: object, where: str) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        return cast(dict[str, object], value)

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "expected a non-empty string")
        return value

    def texts(self, value: object, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "expected a list of strings")
        return tuple(self.text(v, f"{where}[{i}]") for i, v in enumerate(value))

    def version(self, value: object, where: str) -> Version:
        try:
            return Version(self.text(value, where))
        except InvalidVersion:
            raise self.fail(where, f"not a version number: {value!r}") from None

    def driver(self, value: object, where: str) -> DriverVersion:
        try:
            return DriverVersion.parse(self.text(value, where))
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def cc(self, value: object, where: str) -> ComputeCapability:
        try:
            return ComputeCapability.parse(self.text(value, where))
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None


def _parse_majors(
    r: _Reader, raw: object
) -> dict[int, tuple[Mapping[str, DriverVersion], ComputeCapability]]:
    majors: dict[int, tuple[Mapping[str, DriverVersion], ComputeCapability]] = {}
    for key, value in r.obj(raw, "cuda_majors").items():
        where = f"cuda_majors.{key}"
        if not key.isdigit():
            raise r.fail(where, "a CUDA major must be a number like '12'")
        entry = r.obj(value, where)
        floors = r.obj(entry.get("mvc_driver"), f"{where}.mvc_driver")
        majors[int(key)] = (
            {os_: r.driver(floors.get(os_), f"{where}.mvc_driver.{os_}") for os_ in OSES},
            r.cc(entry.get("min_arch"), f"{where}.min_arch"),
        )
        r.text(entry.get("source"), f"{where}.source")
    return majors


def _parse_cudas(
    r: _Reader, raw: object, majors: Mapping[int, object]
) -> dict[str, tuple[Mapping[str, DriverVersion | None], ComputeCapability]]:
    cudas: dict[str, tuple[Mapping[str, DriverVersion | None], ComputeCapability]] = {}
    for key, value in r.obj(raw, "cuda").items():
        where = f"cuda.{key}"
        if not _CUDA_KEY_RE.match(key):
            raise r.fail(where, "a CUDA version must look like '12.8'")
        entry = r.obj(value, where)
        floors = r.obj(entry.get("toolkit_driver"), f"{where}.toolkit_driver")
        per_os: dict[str, DriverVersion | None] = {}
        for os_ in OSES:
            per_os[os_] = None if floors.get(os_) is None else r.driver(floors[os_], f"{where}.{os_}")
        if _cuda_major(key) not in majors:
            raise r.fail(where, f"CUDA {_cuda_major(key)}.x has no entry in cuda_majors")
        cudas[key] = (per_os, r.cc(entry.get("max_arch"), f"{where}.max_arch"))
        r.text(entry.get("source"), f"{where}.source")
    return cudas


def _parse_releases(r: _Reader, raw: object) -> dict[str, Release]:
    releases: dict[str, Release] = {}
    for key, value in r.obj(raw, "releases").items():
        where = f"releases.{key}"
        if not _MINOR_KEY_RE.match(key):
            raise r.fail(where, "a release must look like '2.7'")
        entry = r.obj(value, where)
        pypi = entry.get("pypi_linux")
        vision = entry.get("torchvision")
        variants = r.texts(entry.get("variants"), f"{where}.variants")
        linux_only = r.texts(entry.get("linux_only", []), f"{where}.linux_only")
        if not set(linux_only) <= set(variants):
            raise r.fail(f"{where}.linux_only", "every Linux-only variant must be in `variants`")
        releases[key] = Release(
            minor=key,
            variants=variants,
            python=r.texts(entry.get("python"), f"{where}.python"),
            pypi_linux=None if pypi is None else r.text(pypi, f"{where}.pypi_linux"),
            torchvision=None if vision is None else r.text(vision, f"{where}.torchvision"),
            torchaudio=r.text(entry.get("torchaudio"), f"{where}.torchaudio"),
            source=r.text(entry.get("source"), f"{where}.source"),
            linux_only=linux_only,
        )
    return releases


def _parse_pairs(r: _Reader, raw: object) -> dict[str, dict[str, str]]:
    pairs: dict[str, dict[str, str]] = {}
    for key, value in r.obj(raw, "patch_pairs").items():
        if key.startswith("_"):
            continue  # "_source" and other notes
        entry = r.obj(value, f"patch_pairs.{key}")
        pairs[key] = {k: r.text(v, f"patch_pairs.{key}.{k}") for k, v in entry.items()}
    return pairs


def _parse_arch_lists(r: _Reader, raw: object) -> tuple[_ArchEntry, ...]:
    if not isinstance(raw, list):
        raise r.fail("arch_lists", "expected a list")
    entries: list[_ArchEntry] = []
    for i, value in enumerate(raw):
        where = f"arch_lists[{i}]"
        entry = r.obj(value, where)
        os_ = r.text(entry.get("os"), f"{where}.os")
        if os_ not in (*OSES, "any"):
            raise r.fail(f"{where}.os", "expected 'linux', 'windows' or 'any'")
        try:
            spec = SpecifierSet(r.text(entry.get("torch"), f"{where}.torch"))
        except InvalidSpecifier:
            raise r.fail(f"{where}.torch", "expected a version range like '>=2.8,<2.12'") from None
        codes = tuple(r.cc(c, f"{where}.arch") for c in r.texts(entry.get("arch"), f"{where}.arch"))
        if not codes or list(codes) != sorted(codes):
            raise r.fail(f"{where}.arch", "expected a non-empty list in ascending order")
        ptx_raw = entry.get("ptx")
        ptx = None if ptx_raw is None else r.cc(ptx_raw, f"{where}.ptx")
        source = r.text(entry.get("source"), f"{where}.source")
        variant = r.text(entry.get("variant"), f"{where}.variant")
        machine = r.text(entry.get("machine", "x86_64"), f"{where}.machine")
        if machine not in MACHINES:
            raise r.fail(f"{where}.machine", "expected 'x86_64' or 'aarch64'")
        entries.append(_ArchEntry(variant, spec, os_, ArchList(codes, ptx, source), machine))
    return tuple(entries)


def _parse(raw: Mapping[str, object], origin: str) -> Knowledge:
    r = _Reader(origin)
    majors = _parse_majors(r, raw.get("cuda_majors"))
    abi = r.obj(raw.get("torchaudio_stable_abi_from"), "torchaudio_stable_abi_from")
    rules = r.obj(raw.get("arch_rules"), "arch_rules")

    def cc_map(name: str) -> dict[ComputeCapability, frozenset[ComputeCapability]]:
        table = r.obj(rules.get(name), f"arch_rules.{name}")
        return {
            r.cc(k, f"arch_rules.{name}"): frozenset(
                r.cc(x, f"arch_rules.{name}.{k}") for x in r.texts(v, f"arch_rules.{name}.{k}")
            )
            for k, v in table.items()
        }

    own = r.texts(rules.get("own_code_only"), "arch_rules.own_code_only")
    return Knowledge(
        cuda_majors=majors,
        cuda=_parse_cudas(r, raw.get("cuda"), majors),
        releases=_parse_releases(r, raw.get("releases")),
        patch_pairs=_parse_pairs(r, raw.get("patch_pairs")),
        torchaudio_stable_abi_from=r.version(abi.get("release"), "torchaudio_stable_abi_from.release"),
        own_code_only=frozenset(r.cc(c, "arch_rules.own_code_only") for c in own),
        not_runnable=cc_map("not_runnable"),
        also_runs_on=cc_map("also_runs_on"),
        arch_entries=_parse_arch_lists(r, raw.get("arch_lists")),
        retrieved=str(raw.get("retrieved") or ""),
    )


def _merge(base: dict[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """Override's top-level tables replace entries by key; its arch_lists take precedence."""
    merged = dict(base)
    for key, value in override.items():
        if key == "arch_lists" and isinstance(value, list) and isinstance(base.get(key), list):
            merged[key] = [*value, *cast(list[object], base[key])]
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**cast(dict[str, object], base[key]), **value}
        else:
            merged[key] = value
    return merged


def _read_json(path: Path, origin: str) -> dict[str, object]:
    try:
        text = boundedio.read_text(path, what=origin, error=KnowledgeError)
        data = boundedio.loads_json(text, what=origin, error=KnowledgeError)
    except OSError as exc:
        raise KnowledgeError(f"cannot read {origin}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{origin} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise KnowledgeError(f"{origin} must hold a JSON object")
    return cast(dict[str, object], data)


def shipped_text(name: str) -> str:
    """A data file shipped in facts/data/; the one place that knows where the package keeps them."""
    return resources.files("torchdoctor.service.facts").joinpath("data", name).read_text("utf-8")


def builtin_raw() -> dict[str, object]:
    return cast(dict[str, object], json.loads(shipped_text("knowledge.json")))


def load_knowledge(override: Path | None = None) -> Knowledge:
    """The built-in facts, with the user's override file merged on top when it exists."""
    raw = builtin_raw()
    origin = "built-in knowledge.json"
    path = override if override is not None else paths.knowledge_override_file()
    if path.is_file():
        raw = _merge(raw, _read_json(path, str(path)))
        origin = f"knowledge.json (with {path})"
    return _parse(raw, origin)
