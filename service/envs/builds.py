"""Reading a torch build from an environment's files, without importing torch.

Importing torch takes seconds and can crash or hang in a broken environment; its files say almost
everything we need:
  - `torch-<v>.dist-info/METADATA`: the version (with `+cu128` on download.pytorch.org wheels, bare
    on PyPI) and `Requires-Dist: nvidia-*-cu12` / `cuda-toolkit==13.*` on Linux CUDA wheels;
  - `torch/version.py` (parsed with `ast`, never executed): `__version__`, `cuda`, `hip`, `xpu`;
  - `INSTALLER` (pip, uv, conda) and conda's own `conda-meta/pytorch-*.json`;
  - the same dist-info of torchvision and torchaudio, including the torch they require.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from torchdoctor.service import boundedio
from torchdoctor.service.envs.archscan import read_arch_flags
from torchdoctor.service.errors import UnreadableError
from torchdoctor.service.facts.knowledge import ArchList, Knowledge
from torchdoctor.service.facts.variants import (
    cuda_variant,
    local_label,
    machine_of_platform_tag,
    variant_cuda,
)
from torchdoctor.service.models import Installer, Platform, PythonEnv, TorchBuild, VariantSource

_CUDA_DEP_RE: Final = re.compile(r"^(?:nvidia-[a-z0-9-]+-cu(\d+)|cuda-toolkit)$")
_CONDA_CUDA_RE: Final = re.compile(r"cuda(\d{2})\.?(\d)")
_DIST_INFO_RE: Final = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)\.dist-info$")


@dataclass(frozen=True, slots=True)
class DistInfo:
    """What we read from one `*.dist-info` folder."""

    name: str
    version: str
    requires: tuple[str, ...]
    installer: str | None
    path: Path


@dataclass(frozen=True, slots=True)
class CompanionInfo:
    version: str
    requires_torch: str | None  # the specifier it declares on torch, e.g. "==2.13.0"


@dataclass(frozen=True, slots=True)
class BuildReading:
    """A torch build plus what the diagnosis needs beyond the JSON contract."""

    build: TorchBuild
    torchvision: CompanionInfo | None
    torchaudio: CompanionInfo | None
    # The build's own compiled architectures, read from its library only when the knowledge
    # does not know this (release, variant): see archscan.py.
    arch: ArchList | None = None
    # The machine the wheel was built for, from its WHEEL tags ("aarch64", "x86_64"); None when
    # the tags do not say (conda, a pure tag, no WHEEL file).
    machine: str | None = None


def _iter_dist_infos(
    site_packages: Iterable[Path], names: set[str] | None = None
) -> Iterator[tuple[str, Path]]:
    """(normalised name, `*.dist-info` folder) of `names` (of every project when None)."""
    for sp in site_packages:
        try:
            entries = list(sp.iterdir())
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnreadableError(
                f"cannot read {sp}: {exc.strerror or exc}",
                hint="check the folder's permissions, or list the environment under `exclude` in config.toml",
            ) from None
        for entry in entries:
            match = _DIST_INFO_RE.match(entry.name)
            if not match:
                continue
            name = canonicalize_name(match.group("name"))
            if names is None or name in names:
                yield name, entry


def read_dist_info(path: Path) -> DistInfo | None:
    """Parse METADATA (an RFC 822 header block); None when it is missing or unreadable."""
    try:
        data = boundedio.read_bytes(path / "METADATA", limit=boundedio.METADATA_LIMIT, what="METADATA")
    except boundedio.BoundedReadError:
        return None  # missing, a FIFO, or absurdly large: not a record we can read
    text = data.decode("utf-8", "replace")
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    try:
        installer: str | None = (path / "INSTALLER").read_text(encoding="utf-8").strip() or None
    except OSError:
        installer = None
    return DistInfo(
        name=canonicalize_name(name),
        version=version.strip(),
        requires=tuple(headers.get_all("Requires-Dist") or ()),
        installer=installer,
        path=path,
    )


def parse_version_py(text: str) -> dict[str, str | None]:
    """The string assignments of torch/version.py, read with `ast` (never executed)."""
    fields: dict[str, str | None] = {}
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return fields
    for node in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Constant)
            and (isinstance(value.value, str) or value.value is None)
        ):
            fields[target.id] = value.value
    return fields


def _cuda_major_from_requires(requires: Iterable[str]) -> int | None:
    """CUDA major from the nvidia-*/cuda-toolkit dependencies of an unlabelled Linux wheel."""
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        match = _CUDA_DEP_RE.match(canonicalize_name(req.name))
        if not match:
            continue
        if match.group(1):
            return int(match.group(1))
        # cuda-toolkit[...]==13.0.3 (torch >= 2.14 on PyPI)
        for spec in req.specifier:
            head = spec.version.split(".", 1)[0]
            if head.isdigit():
                return int(head)
    return None


def _installer(value: str | None) -> Installer:
    text = (value or "").lower()
    for kind in (Installer.UV, Installer.CONDA, Installer.PIP):
        if text.startswith(kind.value):
            return kind
    return Installer.UNKNOWN


def _conda_torch(env_root: Path) -> tuple[str, str, str | None] | None:
    """(version, variant, cuda) from conda-meta/pytorch-*.json, if conda installed torch."""
    meta = env_root / "conda-meta"
    try:
        candidates = sorted(meta.glob("pytorch-[0-9]*.json"))
    except OSError:
        return None
    for path in candidates:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("name") != "pytorch":
            continue
        version = str(record.get("version", ""))
        build = str(record.get("build", ""))
        match = _CONDA_CUDA_RE.search(build)
        if match:
            cuda = f"{int(match.group(1))}.{match.group(2)}"
            return version, cuda_variant(cuda), cuda
        return version, "cpu", None
    return None


def _requires_torch(info: DistInfo) -> str | None:
    for line in info.requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "torch" and req.marker is None:
            return str(req.specifier) or None
    return None


def _companion(dist_paths: Iterable[Path]) -> CompanionInfo | None:
    infos = [i for p in dist_paths if (i := read_dist_info(p))]
    if not infos:
        return None
    info = infos[0]
    return CompanionInfo(version=info.version, requires_torch=_requires_torch(info))


def is_valid_version(text: str) -> bool:
    """PEP 440, the local label aside ("2.7.1+cu128" is valid; "garbage" is not)."""
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def dist_info_folders(site_packages: Iterable[Path], names: Iterable[str]) -> dict[str, list[Path]]:
    """Every `*.dist-info` folder of the projects `names`, by normalised name, in folder order.

    More than one for a project is what `torch-unreadable` reports as "several torch installations
    are recorded at once": a stale record (`torch-2.5.1.dist-info` beside `torch-2.7.1+cu128...`).
    """
    wanted: set[str] = {canonicalize_name(n) for n in names}
    found: dict[str, list[Path]] = {name: [] for name in sorted(wanted)}
    for name, path in _iter_dist_infos(site_packages, wanted):
        found[name].append(path)
    return found


def installed_distributions(site_packages: Iterable[Path]) -> dict[str, DistInfo]:
    """Every distribution in these site-packages folders, by normalised name."""
    found: dict[str, DistInfo] = {}
    for _name, path in _iter_dist_infos(site_packages):
        if (info := read_dist_info(path)) is not None:
            found.setdefault(info.name, info)
    return found


def requirement_names(requires: Iterable[str]) -> set[str]:
    """The projects `Requires-Dist` lines name, leaving out extras (those are not installed)."""
    names: set[str] = set()
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        names.add(canonicalize_name(req.name))
    return names


def wheel_requirements(wheel: Path) -> tuple[str, ...]:
    """The `Requires-Dist` lines of a wheel file's METADATA (empty if it cannot be read).

    A METADATA that unpacks to more than `boundedio.METADATA_LIMIT` (a zip bomb) raises
    BoundedReadError instead: that wheel is hostile, and installing it must not go ahead.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            name = next(
                (n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None
            )
            if name is None:
                return ()
            data = boundedio.read_zip_member(zf, name, what=f"the METADATA of {wheel.name}")
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError):
        return ()
    text = data.decode("utf-8", "replace")
    return tuple(HeaderParser().parsestr(text, headersonly=True).get_all("Requires-Dist") or ())


def _torch_package_dirs(site_packages: tuple[Path, ...]) -> list[Path]:
    return [sp / "torch" for sp in site_packages if (sp / "torch").is_dir()]


def _read_torch_files(
    dist_paths: list[Path], package_dirs: list[Path], has_conda: bool
) -> tuple[DistInfo | None, dict[str, str | None], list[str]]:
    """The torch dist-info and version.py, and what is inconsistent between them."""
    problems: list[str] = []
    infos = [i for p in dist_paths if (i := read_dist_info(p))]
    if len(dist_paths) > 1:
        found = ", ".join(sorted(p.name for p in dist_paths))
        problems.append(f"several torch installations are recorded at once ({found})")
    if dist_paths and not infos:
        problems.append(f"{dist_paths[0].name} has no readable METADATA")
    info = infos[0] if infos else None
    fields: dict[str, str | None] = {}
    if not package_dirs:
        if info is not None:
            problems.append("torch is recorded as installed but its package folder is missing")
    else:
        try:
            fields = parse_version_py(
                (package_dirs[0] / "version.py").read_text(encoding="utf-8", errors="replace")
            )
        except OSError:
            problems.append("torch/version.py is missing")
        if not dist_paths and not has_conda:
            problems.append("the torch folder has no dist-info: an install or uninstall was interrupted")
    meta_version, file_version = (info.version if info else None), fields.get("__version__")
    if meta_version and file_version:
        same = meta_version == file_version or (
            "+" not in meta_version and file_version.split("+", 1)[0] == meta_version
        )
        if not same:
            problems.append(
                f"the recorded version {meta_version} does not match torch/version.py ({file_version}): "
                "files of two installs are mixed"
            )
    return info, fields, problems


def read_build(env: PythonEnv, knowledge: Knowledge) -> BuildReading | None:
    """The torch build in `env`, or None when torch is not installed at all.

    A torch folder without consistent metadata (an interrupted install, files deleted by hand)
    comes back as a build whose `problems` say what is wrong: the `torch-unreadable` finding.
    """
    site = env.site_packages
    # One listing of site-packages for the whole family: this runs once per environment per check.
    by_name: dict[str, list[Path]] = {"torch": [], "torchvision": [], "torchaudio": []}
    for name, path in _iter_dist_infos(site, set(by_name)):
        by_name[name].append(path)
    dist_paths = by_name["torch"]
    package_dirs = _torch_package_dirs(site)
    conda = _conda_torch(env.root)
    if not dist_paths and not package_dirs and conda is None:
        return None

    info, fields, problems = _read_torch_files(dist_paths, package_dirs, conda is not None)
    torchvision = _companion(by_name["torchvision"])
    torchaudio = _companion(by_name["torchaudio"])
    installer = _installer(info.installer if info else None)
    tv_version = torchvision.version if torchvision else None
    ta_version = torchaudio.version if torchaudio else None

    if conda is not None and (info is None or installer in (Installer.CONDA, Installer.UNKNOWN)):
        conda_version, conda_variant, conda_cuda = conda
        build = TorchBuild(
            version=conda_version,
            variant=conda_variant,
            cuda=fields.get("cuda") or conda_cuda,
            installer=Installer.CONDA,
            variant_source=VariantSource.CONDA,
            torchvision=tv_version,
            torchaudio=ta_version,
        )
        # conda builds compile other architectures than the wheels the knowledge describes.
        conda_arch = read_arch_flags(package_dirs[0]) if package_dirs and conda_cuda else None
        return BuildReading(build, torchvision, torchaudio, conda_arch)

    # The most specific version string we have: version.py carries the label even for PyPI wheels.
    file_version, meta_version = fields.get("__version__"), (info.version if info else None)
    version = file_version if file_version and "+" in file_version else (meta_version or file_version)
    if version is not None and not is_valid_version(version):
        problems.append(f"its recorded version {version!r} is not a valid version number")
        version = None
    if version is None and not problems:
        problems.append("neither the torch metadata nor torch/version.py names a version")
    variant, cuda, source = _variant(version, fields, info, env.platform, knowledge)
    machine = wheel_machine(dist_paths[0]) if dist_paths else None
    arch = None
    if version and variant and variant.startswith("cu") and package_dirs:
        known = knowledge.arch_list(version, variant, env.platform, machine)
        if known is None or known.inferred:
            arch = read_arch_flags(package_dirs[0])
    build = TorchBuild(
        version=version,
        variant=variant,
        cuda=cuda,
        hip=fields.get("hip"),
        installer=installer,
        variant_source=source,
        problems=tuple(problems),
        torchvision=tv_version,
        torchaudio=ta_version,
    )
    return BuildReading(build, torchvision, torchaudio, arch, machine)


def wheel_machine(dist_info: Path) -> str | None:
    """The machine of the wheel a dist-info came from: its WHEEL file's first platform-specific
    `Tag:` ("cp312-cp312-manylinux_2_28_aarch64" -> "aarch64"); None when no tag names one."""
    try:
        text = boundedio.read_text(dist_info / "WHEEL", limit=64 * 1024, what="WHEEL")
    except boundedio.BoundedReadError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() != "tag":
            continue
        platform_tag = value.strip().rsplit("-", 1)[-1]
        if platform_tag and platform_tag != "any":
            return machine_of_platform_tag(platform_tag)
    return None


def _variant(
    version: str | None,
    fields: dict[str, str | None],
    info: DistInfo | None,
    platform: Platform,
    knowledge: Knowledge,
) -> tuple[str | None, str | None, VariantSource]:
    """(variant, cuda, how we know), from the strongest evidence available."""
    cuda = fields.get("cuda")
    label = local_label(version) if version else None
    if label is not None:
        return label, cuda or variant_cuda(label), VariantSource.LOCAL_LABEL
    if cuda:
        return cuda_variant(cuda), cuda, VariantSource.VERSION_PY
    hip = fields.get("hip")
    if hip:
        parts = hip.split(".")
        return f"rocm{parts[0]}.{parts[1] if len(parts) > 1 else 0}", None, VariantSource.VERSION_PY
    if fields.get("xpu"):
        return "xpu", None, VariantSource.VERSION_PY
    if version is None:
        return None, None, VariantSource.UNKNOWN
    major = _cuda_major_from_requires(info.requires) if info else None
    if major is not None:
        release = knowledge.release(version)
        default = release.pypi_linux if release else None
        if default is not None and default.startswith(f"cu{major}"):
            return default, variant_cuda(default), VariantSource.REQUIRES_DIST
        return None, None, VariantSource.REQUIRES_DIST
    if "cuda" in fields or platform in (Platform.WINDOWS, Platform.MACOS):
        # version.py says cuda=None, or an unlabelled Windows/macOS wheel: PyPI's CPU build.
        return "cpu", None, VariantSource.PYPI_DEFAULT if "cuda" not in fields else VariantSource.VERSION_PY
    return "cpu", None, VariantSource.PYPI_DEFAULT
