"""Choosing the torch build to install: a pure policy over what the index publishes.

The policy, in order (issue #3):
  (a) keep the installed torch release when a fitting build of it is published for this
      environment's Python and platform; else take the newest release that has a fitting build;
  (b) for that release, the newest CUDA variant that fits fully, else the newest that fits;
  (c) the companions the environment already has, at their paired versions, from the same variant;
  (d) no NVIDIA GPU: the CPU build;
  (e) an NVIDIA GPU but no fitting build: refuse, saying why, and name the CPU build as a choice
      the user can make — never pick it silently.
`gather` does the I/O (index pages); `choose_torch` and `choose_companions` decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from torchdoctor.service.envs.builds import BuildReading
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.facts.knowledge import Knowledge, release_minor
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE, cuda_key, machine_of_tags, variant_cuda
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.metadata import admits
from torchdoctor.service.models import Hardware, Installer, Platform
from torchdoctor.service.rules.diagnose import gpu_words
from torchdoctor.service.rules.fit import DriverLevel, Fit, FitLevel, build_fit, driver_verdict

COMPANIONS = ("torchvision", "torchaudio")


class PlanRefusedError(TorchdoctorError):
    """No published build fits this machine (exit 1): the message says why."""

    code = "plan-refused"


@dataclass(frozen=True, slots=True)
class Choice:
    """The torch build chosen for an environment."""

    variant: str
    file: IndexFile
    fit: Fit | None  # None for the CPU build
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    environment: Path
    variant: str
    index_url: str
    torch: IndexFile
    companions: tuple[IndexFile, ...]
    reason: str
    notes: tuple[str, ...] = ()
    current: str | None = None  # the torch version installed now
    changes_nothing: bool = False  # the environment already has exactly these builds

    @property
    def files(self) -> tuple[IndexFile, ...]:
        return (self.torch, *self.companions)

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(f"{f.project}=={f.version}" for f in self.files)


@dataclass(frozen=True, slots=True)
class Published:
    """The wheels each variant's index offers that install into the target environment."""

    files: Mapping[str, Mapping[str, tuple[IndexFile, ...]]] = field(
        default_factory=dict
    )  # variant -> project

    def of(self, variant: str, project: str) -> tuple[IndexFile, ...]:
        return self.files.get(variant, {}).get(project, ())


def _best_file(files: Sequence[IndexFile], tags: Sequence[Tag]) -> IndexFile:
    """Among files of one version, the one whose best tag the interpreter prefers most."""
    rank = {tag: i for i, tag in enumerate(tags)}

    def score(f: IndexFile) -> int:
        return min((rank[t] for t in f.tags if t in rank), default=len(rank))

    return min(files, key=score)


def _releases(files: Sequence[IndexFile], variant: str) -> dict[Version, list[IndexFile]]:
    """Final releases with this variant's local label, newest first."""
    by_version: dict[Version, list[IndexFile]] = {}
    for f in files:
        if f.local != variant or f.version.is_prerelease or f.version.is_devrelease:
            continue
        by_version.setdefault(f.public_version, []).append(f)
    return dict(sorted(by_version.items(), reverse=True))


def candidate_variants(knowledge: Knowledge, hardware: Hardware) -> tuple[str, ...]:
    """The CUDA variants worth asking the index about: those whose driver floor the driver meets.

    Asking only these keeps `plan` to a handful of requests; arch coverage is judged per release
    later, because it differs between releases of one variant (cu128 in 2.7 vs 2.8).
    """
    variants = {v for rel in knowledge.releases.values() for v in rel.variants if v.startswith("cu")}
    keep = []
    for variant in variants:
        cuda = variant_cuda(variant)
        if cuda is None:
            continue
        if driver_verdict(knowledge, cuda, hardware).level is not DriverLevel.TOO_OLD:
            keep.append(variant)
    return tuple(sorted(keep, key=cuda_key, reverse=True))


def _level_rank(fit: Fit) -> int:
    return {FitLevel.FULL: 2, FitLevel.MINOR_COMPAT: 1, FitLevel.NONE: 0}[fit.level]


def choose_torch(
    *,
    installed: BuildReading | None,
    hardware: Hardware,
    knowledge: Knowledge,
    published: Published,
    tags: Sequence[Tag],
    platform: Platform | None = None,
) -> Choice:
    """Apply (a), (b), (d) and (e); raises PlanRefusedError when nothing fits.

    `platform`: the OS of the environment's wheels (their arch lists differ), by default the
    hardware's.
    """
    current_release = installed.build.release if installed and installed.build.version else None
    current = Version(current_release) if current_release else None

    if not hardware.gpus_known:
        raise PlanRefusedError(
            "the NVIDIA driver answered without listing its GPUs, so no build can be chosen safely",
            hint="run `torchdoctor hardware` to see why (a restart after a driver update fixes most cases)",
        )
    if hardware.has_nvidia_gpu and not hardware.driver_known:
        # Without the driver version "fits" would mean "fits any driver": refuse rather than guess.
        raise PlanRefusedError(
            "the NVIDIA driver's version is not known, so no CUDA build can be chosen safely",
            hint='add "driver_version" to the hardware file, or let torchdoctor probe the driver',
        )

    if not hardware.has_nvidia_gpu:
        releases = _releases(published.of("cpu", "torch"), "cpu")
        if not releases:
            raise PlanRefusedError("the index publishes no CPU build of torch for this environment's Python")
        version = current if current in releases else next(iter(releases))
        kept = "keeps" if version == current else "installs"
        reason = f"No NVIDIA GPU was found, so this {kept} torch {version} as the CPU build."
        return Choice("cpu", _best_file(releases[version], tags), None, reason)

    # Every published (release, CUDA variant) with its fit; aarch64 wheels have their own lists.
    machine = machine_of_tags(t.platform for t in tags)
    options: dict[Version, list[tuple[str, Fit, list[IndexFile]]]] = {}
    for variant in published.files:
        if not variant.startswith("cu"):
            continue
        for version, files in _releases(published.of(variant, "torch"), variant).items():
            fit = build_fit(knowledge, str(version), variant, hardware, platform=platform, machine=machine)
            options.setdefault(version, []).append((variant, fit, files))

    fitting = {v: [o for o in opts if o[1].level is not FitLevel.NONE] for v, opts in options.items()}
    fitting = {v: opts for v, opts in fitting.items() if opts}
    if not fitting:
        raise PlanRefusedError(_refusal(hardware, knowledge, options), hint=_cpu_hint())

    if current is not None and current in fitting:
        version, why = current, f"keeps torch {current}"
    else:
        version = max(fitting)
        if current is None:
            why = f"installs torch {version}, the newest release with a build that fits"
        else:
            why = f"moves to torch {version} because no published build of torch {current} fits"
    best = max(fitting[version], key=lambda o: (_level_rank(o[1]), cuda_key(o[0])))
    # The installed variant stays when no other fits better: reinstalling an equal build would
    # repair nothing, and `check` calls such a build ok (or only informs about the other one).
    own_variant = installed.build.variant if installed is not None and version == current else None
    own = next((o for o in fitting[version] if o[0] == own_variant), None)
    stays = own is not None and _level_rank(own[1]) == _level_rank(best[1])
    if own is not None and stays:
        best = own
    variant, fit, files = best
    how = "fits fully" if fit.level is FitLevel.FULL else "runs through CUDA minor-version compatibility"
    driver = hardware.driver_version or "as reported"
    if stays:
        better = "fits better" if fit.level is FitLevel.FULL else "fits this driver fully"
        reason = (
            f"This {why} as the {variant} build it has: it covers the {gpu_words(hardware.gpus)} and "
            f"{how} with driver {driver}, and no other build of it {better}."
        )
    else:
        reason = (
            f"This {why}, as the {variant} build: the newest CUDA variant of it that covers the "
            f"{gpu_words(hardware.gpus)} and {how} with driver {driver}."
        )
    return Choice(variant, _best_file(files, tags), fit, reason)


def cpu_choice_hint(command: str | None = None, index_base: str = DEFAULT_INDEX_BASE) -> str:
    """What a refusal offers instead: the CPU build, as the user's choice, with the exact command
    when the caller can name the version (`plan` does; the pure policy cannot)."""
    if command is not None:
        return f"the CPU build runs without the GPU if you choose it: {command}"
    return f"the CPU build (from {index_base.rstrip('/')}/cpu) runs without the GPU if you choose it"


def _cpu_hint() -> str:
    return cpu_choice_hint()


def _refusal(
    hardware: Hardware,
    knowledge: Knowledge,
    options: Mapping[Version, list[tuple[str, Fit, list[IndexFile]]]],
) -> str:
    gpus = gpu_words(hardware.gpus)
    if not options:
        return (
            "no CUDA build of torch published for this environment's Python runs with "
            f"driver {hardware.driver_version} on the {gpus}"
        )
    newest = max(options)
    reasons = []
    for variant, fit, _ in sorted(options[newest], key=lambda o: cuda_key(o[0]), reverse=True):
        if fit.not_for_jetson:
            reasons.append(f"{variant} is an aarch64 server build, which does not run on a Jetson")
        elif fit.driver.level is DriverLevel.TOO_OLD:
            reasons.append(f"{variant} needs driver {fit.driver.floor.mvc} or newer")
        elif fit.uncovered:
            reasons.append(f"{variant} has no code for the {gpu_words(fit.uncovered)}")
    detail = "; ".join(reasons) if reasons else "none of its builds fits"
    return (
        f"no published build of torch fits the {gpus} with driver {hardware.driver_version} "
        f"(torch {newest}: {detail})"
    )


def companion_order(
    choice: Choice, published: Published, project: str, tags: Sequence[Tag]
) -> list[IndexFile]:
    """One wheel per release of `project` on the chosen variant, newest first: the wheels whose
    declared `Requires-Dist: torch` `plan` reads, in the order `choose_companions` weighs them."""
    releases = _releases(published.of(choice.variant, project), choice.variant)
    return [_best_file(files, tags) for files in releases.values()]


def choose_companions(
    *,
    choice: Choice,
    installed: BuildReading | None,
    knowledge: Knowledge,
    published: Published,
    tags: Sequence[Tag],
    declared: Mapping[str, SpecifierSet] | None = None,
) -> tuple[tuple[IndexFile, ...], tuple[str, ...]]:
    """(c): the companions the environment has, paired with the chosen torch, from its variant.

    `declared`: what companion wheels (by URL) require of torch, read from the index's metadata
    (`metadata.py`). Where the index told it, the newest
    release whose requirement admits the chosen torch is taken, so a release nobody has written
    into the data is paired by what it says. Only where no metadata could be read do the data's
    pairs decide, and for a torch release the data does not know, the 0.(minor+15) rule every 2.x
    release has followed, which the plan then calls a guess.
    """
    if installed is None:
        return (), ()
    declared = declared or {}
    torch_version = choice.file.public_version
    chosen: list[IndexFile] = []
    notes: list[str] = []
    for project in COMPANIONS:
        if getattr(installed, project) is None:
            continue
        releases = _releases(published.of(choice.variant, project), choice.variant)
        if not releases:
            notes.append(
                f"{project} is not published for {choice.variant} for this Python; it was left as it is"
            )
            continue
        best = {version: _best_file(files, tags) for version, files in releases.items()}
        read = {v: declared[f.url] for v, f in best.items() if f.url in declared}
        if read:
            pick = next((v for v, spec in read.items() if admits(spec, torch_version)), None)
            if pick is None:
                notes.append(
                    f"no {project} published for {choice.variant} declares that it works with torch "
                    f"{torch_version}; it was left as it is"
                )
                continue
            chosen.append(best[pick])
            continue
        pick = _paired_by_data(project, releases, torch_version, knowledge, notes)
        if pick is None:
            notes.append(
                f"no {project} paired with torch {torch_version} is published for {choice.variant}; "
                "it was left as it is"
            )
            continue
        chosen.append(best[pick])
    return tuple(chosen), tuple(notes)


def _paired_by_data(
    project: str,
    releases: Mapping[Version, list[IndexFile]],
    torch_version: Version,
    knowledge: Knowledge,
    notes: list[str],
) -> Version | None:
    """The companion release the data pairs with torch, when the index's metadata could not say."""
    wanted = knowledge.paired_patch(str(torch_version), project)
    if wanted is not None and Version(wanted) in releases:
        return Version(wanted)
    pick = next((v for v in releases if _pairs(project, v, torch_version, knowledge)), None)
    release = knowledge.release(str(torch_version))
    if pick is not None and project == "torchvision" and (release is None or release.torchvision is None):
        notes.append(
            f"torchvision {pick} was paired with torch {torch_version} by a guess: torchvision "
            f"0.(minor+15) has gone with every torch 2.x release so far, but neither the index's "
            "metadata nor this copy of torchdoctor's data says which torchvision goes with it"
        )
    return pick


def _pairs(project: str, version: Version, torch_version: Version, knowledge: Knowledge) -> bool:
    """Whether a companion release belongs with this torch by the minor-line rules."""
    line = release_minor(str(version))
    release = knowledge.release(str(torch_version))
    if project == "torchvision":
        if release is not None and release.torchvision is not None:
            return line == release.torchvision
        # Every 2.x release so far pairs torchvision 0.(minor+15) (a test of the data checks it).
        return line == f"0.{torch_version.minor + 15}"
    if torch_version >= knowledge.torchaudio_stable_abi_from:
        return version >= knowledge.torchaudio_stable_abi_from and version <= torch_version
    return release is not None and line == release.torchaudio


def build_plan(
    *,
    environment: Path,
    choice: Choice,
    companions: tuple[IndexFile, ...],
    notes: tuple[str, ...],
    index_base: str,
    installed: BuildReading | None,
) -> Plan:
    current = installed.build.version if installed else None
    files = (choice.file, *companions)
    unchanged = _has_exactly(installed, files)
    if installed is not None and installed.build.installer is Installer.CONDA and not unchanged:
        notes = (conda_note(installed.build.version), *notes)
    return Plan(
        environment=environment,
        variant=choice.variant,
        index_url=f"{index_base.rstrip('/')}/{choice.variant}",
        torch=choice.file,
        companions=companions,
        reason=choice.reason,
        notes=notes,
        current=current,
        changes_nothing=unchanged,
    )


def conda_note(version: str | None) -> str:
    """What `plan` says up front about a conda-installed torch: `fix` refuses it without consent."""
    what = f"torch {version}" if version else "torch"
    return (
        f"{what} here was installed by conda: `torchdoctor fix` replaces it with these pip wheels only "
        "when given --allow-conda-mix (two package managers in one environment); or change it with conda"
    )


def _has_exactly(installed: BuildReading | None, files: Sequence[IndexFile]) -> bool:
    """The environment already has every planned build at exactly the planned version."""
    if installed is None or installed.build.problems:
        return False  # a damaged torch is reinstalled even at the same version
    have = {"torch": installed.build.version}
    for project in COMPANIONS:
        info = getattr(installed, project)
        have[project] = info.version if info is not None else None
    return all(have.get(f.project) == str(f.version) for f in files)


def plan_to_json(plan: Plan) -> dict[str, object]:
    """The `plan --json` document (DESIGN.md), plus the files with their hashes and sizes."""
    return {
        "environment": str(plan.environment),
        "variant": plan.variant,
        "index_url": plan.index_url,
        "requirements": list(plan.requirements),
        "reason": plan.reason,
        "notes": list(plan.notes),
        "current": plan.current,
        "changes_nothing": plan.changes_nothing,
        "files": [
            {"project": f.project, "filename": f.filename, "url": f.url, "sha256": f.sha256, "size": f.size}
            for f in plan.files
        ],
    }
