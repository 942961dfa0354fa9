"""The rules: (hardware, environment, build, knowledge) -> findings. Pure; no I/O.

Each finding says in one sentence what is wrong and gives the command that fixes it. Rules that
need a fact the data does not have stay silent rather than guess: a false alarm teaches people to
ignore the tray icon.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from torchdoctor.service.envs.builds import BuildReading, CompanionInfo, is_valid_version
from torchdoctor.service.facts.knowledge import Coverage, Knowledge, release_minor
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE, cuda_key, local_label, variant_cuda
from torchdoctor.service.models import (
    Finding,
    FindingCode,
    Gpu,
    Hardware,
    Installer,
    Platform,
    PythonEnv,
    Severity,
    TorchBuild,
)
from torchdoctor.service.rules.fit import (
    DriverLevel,
    Fit,
    FitLevel,
    best_variant,
    build_fit,
    driver_verdict,
    gpu_coverage,
)
from torchdoctor.service.rules.interrupted import Interrupted


@dataclass(frozen=True, slots=True)
class _Ctx:
    env: PythonEnv
    hardware: Hardware
    knowledge: Knowledge
    build: TorchBuild
    reading: BuildReading
    index_base: str = DEFAULT_INDEX_BASE

    @property
    def platform(self) -> Platform:
        """The OS the environment's wheels are for (arch lists differ between Linux and Windows)."""
        return self.env.platform

    @property
    def machine(self) -> str | None:
        """The machine the installed wheel was built for (its WHEEL tags), else this host's: an
        aarch64 wheel has its own arch lists, as `plan` takes them from the environment's tags."""
        return self.reading.machine or self.hardware.machine

    def fit_of(self, version: str, variant: str) -> Fit:
        return build_fit(
            self.knowledge, version, variant, self.hardware, platform=self.platform, machine=self.machine
        )

    def best_of(self, version: str, candidates: tuple[str, ...] | None = None) -> tuple[str, Fit] | None:
        return best_variant(
            self.knowledge,
            version,
            self.hardware,
            candidates=candidates,
            platform=self.platform,
            machine=self.machine,
        )

    @property
    def conda(self) -> bool:
        """torch came from conda: `fix` replaces it only with --allow-conda-mix, and a pip command
        typed by hand would mix two package managers, so no hand command is offered."""
        return self.build.installer is Installer.CONDA

    def root(self) -> str:
        return quote(str(self.env.root), self.env.platform)

    def fix_cmd(self) -> str:
        extra = " --allow-conda-mix" if self.conda else ""
        return f"torchdoctor fix --env {self.root()}{extra}"

    def plan_cmd(self) -> str:
        return f"torchdoctor plan --env {self.root()}"

    def pip_cmd(self, target: _Target | None) -> str | None:
        """The exact install command for `target`, or None when some version cannot be pinned."""
        if target is None or self.conda or not target.exact:
            return None
        pins = target_pins(self.knowledge, self.reading, target.version, target.variant)
        if pins is None:
            return None
        return pip_command(self.env, pins, f"{self.index_base.rstrip('/')}/{target.variant}")


@dataclass(frozen=True, slots=True)
class _Target:
    """The build `plan` would choose by the knowledge: torch `version` ("2.7.1") as `variant`."""

    version: str  # "2.7.1"; only the minor line ("2.14") when the data knows no patch release of it
    variant: str
    moves_release: bool = False
    exact: bool = True  # `version` is a full release that a pin can name


def quote(text: str, platform: Platform) -> str:
    """Quote a path for the shell a person on that platform will paste it into."""
    if platform is Platform.WINDOWS:
        return f'"{text}"' if any(c in text for c in " &()[]{}^=;!+,`~") else text
    return shlex.quote(text)


def pip_command(env: PythonEnv, pins: Sequence[str], index_url: str) -> str:
    """`python -m pip install torch==2.7.1+cu128 ... --index-url .../cu128`, runnable as printed.

    Pinned with the local label: `torch==2.7.1` is already satisfied by 2.7.1+cpu, and
    `--force-reinstall` would reinstall every dependency (gigabytes of nvidia-* wheels) too. An
    environment without pip (uv makes those) gets `uv pip install --python`.
    """
    python = quote(str(env.python), env.platform)
    reqs = " ".join(pins)
    if env.has_pip:
        return f"{python} -m pip install {reqs} --index-url {index_url}"
    return f"uv pip install --python {python} {reqs} --index-url {index_url}"


def target_pins(
    knowledge: Knowledge, reading: BuildReading | None, version: str, variant: str
) -> list[str] | None:
    """torch==X+variant plus the companions the environment has, at their paired versions.

    None when a companion's paired version is not known: an unpinned one could come from anywhere.
    """
    pins = [f"torch=={version}+{variant}"]
    for name in ("torchvision", "torchaudio"):
        if reading is None or getattr(reading, name) is None:
            continue
        paired = knowledge.paired_patch(version, name)
        if paired is None:
            return None
        pins.append(f"{name}=={paired}+{variant}")
    return pins


def gpu_words(gpus: Iterable[Gpu]) -> str:
    """ "NVIDIA GeForce RTX 5090 (sm_120)" or a joined list for several GPUs."""
    parts: list[str] = []
    for g in gpus:
        cc = g.compute_capability
        parts.append(f"{g.name} (sm_{cc.sm})" if cc else g.name)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _latest_patch(knowledge: Knowledge, minor: str) -> str | None:
    """The newest patch release of a minor line the data knows ("2.7" -> "2.7.1")."""
    patches = [v for v in knowledge.patch_pairs if release_minor(v) == minor]
    return max(patches, key=Version) if patches else None


def _target(ctx: _Ctx) -> _Target | None:
    """What `plan` would choose, judged from the knowledge instead of the index (policy.py):
    the installed release when a build of it fits, its newest variant that fits fully, else the
    newest that fits, keeping the installed variant when nothing fits better; else the newest
    release with a fitting build. None: nothing known fits."""
    hw, kn, build = ctx.hardware, ctx.knowledge, ctx.build
    release = build.release
    if not hw.has_nvidia_gpu:
        return _Target(release, "cpu") if release is not None else None
    if release is not None:
        choice = ctx.best_of(release)
        if choice is not None:
            variant, fit = choice
            rel = kn.release(release)
            own = build.variant
            if (
                own is not None
                and own.startswith("cu")
                and rel is not None
                and own in rel.variants
                and ctx.fit_of(release, own).level is fit.level
            ):
                variant = own
            return _Target(release, variant)
        # A release the data does not know: `plan` keeps it when the index has a fitting build,
        # which the data cannot judge beyond the installed variant's inferred fit.
        own = build.variant
        if (
            kn.release(release) is None
            and own is not None
            and own.startswith("cu")
            and ctx.fit_of(release, own).level is not FitLevel.NONE
        ):
            return _Target(release, own)
    newer = _newest_fitting_release(ctx)
    if newer is None:
        return None
    minor, variant = newer
    patch = _latest_patch(kn, minor)
    if patch is None:
        return _Target(minor, variant, moves_release=True, exact=False)
    return _Target(patch, variant, moves_release=True)


def _unchanged(ctx: _Ctx, target: _Target | None) -> bool:
    """The target is the build installed now (companions aside)."""
    return target is not None and ctx.build.version == f"{target.version}+{target.variant}"


def _fix_and_hand(ctx: _Ctx, target: _Target | None, why: str = "") -> str:
    """`run torchdoctor fix ...` (with `why` in brackets), plus the exact pip command when there is one."""
    fix = f"run `{ctx.fix_cmd()}`" + (f" ({why})" if why else "")
    if ctx.conda:
        return f"{fix}, which replaces conda's torch with pip wheels; or change it with conda itself"
    pip = ctx.pip_cmd(target)
    return f"{fix}, or by hand: {pip}" if pip else fix


def _target_hint(ctx: _Ctx) -> str:
    """The fix for a build that does not fit: `torchdoctor fix`, plus the pip command when we can
    name the exact build `plan` would choose."""
    if not ctx.hardware.gpus_known:
        return (
            "run `torchdoctor hardware` to see why the driver did not list its GPUs (a restart after a "
            f"driver update fixes most cases), then `{ctx.fix_cmd()}`"
        )
    if ctx.hardware.has_nvidia_gpu and not ctx.hardware.driver_known:
        return (
            "torchdoctor needs the NVIDIA driver's version to choose a CUDA build: "
            f"run `{ctx.plan_cmd()}` on this machine (or add driver_version to the hardware file)"
        )
    target = _target(ctx)
    if target is None:
        return f"run `{ctx.plan_cmd()}` to see the options (no known CUDA build of torch fits this machine)"
    why = ""
    release = ctx.build.release
    if target.moves_release and release is not None and ctx.knowledge.release(release) is None:
        # The data does not know this release's builds; the index may still have one that fits.
        return _fix_and_hand(ctx, None, f"`{ctx.plan_cmd()}` shows the build it would install")
    if target.moves_release:
        why = (
            f"no build of torch {release or 'this version'} fits; "
            f"it moves to torch {target.version} {target.variant}"
        )
    return _fix_and_hand(ctx, target, why)


def _newest_fitting_release(ctx: _Ctx) -> tuple[str, str] | None:
    releases = sorted(ctx.knowledge.releases.values(), key=lambda r: Version(r.minor), reverse=True)
    for rel in releases:
        choice = ctx.best_of(f"{rel.minor}.0")
        if choice is not None:
            return rel.minor, choice[0]
    return None


def _gpu_usable(ctx: _Ctx) -> bool:
    """Some known CUDA build of torch could use at least one of the GPUs (ignoring the driver)."""
    for rel in ctx.knowledge.releases.values():
        for variant in rel.variants:
            if not variant.startswith("cu"):
                continue
            arch = ctx.knowledge.arch_list(f"{rel.minor}.0", variant, ctx.platform, ctx.machine)
            if arch is None:
                continue
            cov = gpu_coverage(ctx.knowledge, arch, variant_cuda(variant), ctx.hardware.gpus)
            if any(c.coverage in (Coverage.SASS, Coverage.PTX, None) for c in cov):
                return True
    return False


# --- rules -------------------------------------------------------------------------------------


def _unreadable(ctx: _Ctx) -> Finding:
    problems = "; ".join(ctx.build.problems)
    fix = f"reinstall it: run `{ctx.fix_cmd()}`"
    build = ctx.build
    if (
        not ctx.conda
        and build.release is not None
        and build.variant is not None
        and is_valid_version(build.release)
    ):
        # Only torch's own files are damaged: reinstall exactly this build, without its dependencies.
        url = f"{ctx.index_base.rstrip('/')}/{build.variant}"
        python = quote(str(ctx.env.python), ctx.env.platform)
        pin = f"torch=={build.release}+{build.variant}"
        hand = (
            f"{python} -m pip install --force-reinstall --no-deps {pin} --index-url {url}"
            if ctx.env.has_pip
            else f"uv pip install --python {python} --reinstall --no-deps {pin} --index-url {url}"
        )
        fix += f", or by hand: {hand}"
    return Finding(FindingCode.TORCH_UNREADABLE, f"torch here is half-installed or damaged: {problems}.", fix)


def _no_cuda_with_gpu(ctx: _Ctx) -> Finding | None:
    build = ctx.build
    if build.cuda is not None or not _gpu_usable(ctx):
        return None
    variant = build.variant or ""
    if variant == "cpu":
        what = "a CPU-only build"
    elif variant == "xpu":
        what = "an Intel XPU build"
    elif variant.startswith("rocm"):
        what = f"an AMD ROCm build ({variant})"
    else:
        what = "a build without CUDA"
    return Finding(
        FindingCode.CPU_BUILD_WITH_GPU,
        f"torch {build.version} is {what}, so it cannot use the {gpu_words(ctx.hardware.gpus)}; "
        "GPU code fails with 'Torch not compiled with CUDA enabled'.",
        _target_hint(ctx),
    )


def _cuda_without_gpu(ctx: _Ctx) -> Finding:
    build = ctx.build
    return Finding(
        FindingCode.CUDA_BUILD_WITHOUT_GPU,
        f"torch {build.version} is a CUDA build, but this machine has no NVIDIA GPU or driver: "
        "it runs on the CPU only and carries gigabytes of CUDA libraries it cannot use.",
        "if this environment is meant for this machine, switch to the CPU build: " + _target_hint(ctx),
    )


def _driver(ctx: _Ctx) -> Finding | None:
    cuda = ctx.build.cuda
    if cuda is None:
        return None
    verdict = driver_verdict(ctx.knowledge, cuda, ctx.hardware)
    floor = verdict.floor
    if verdict.level is DriverLevel.TOO_OLD and ctx.hardware.tegra:
        # A Jetson's driver comes with its JetPack (L4T) release: no desktop driver to install.
        return Finding(
            FindingCode.DRIVER_TOO_OLD,
            f"torch {ctx.build.version} is built with CUDA {cuda}, but this Jetson's JetPack "
            f"(L4T {ctx.hardware.driver_version or 'release unknown'}) supports CUDA "
            f"{ctx.hardware.cuda_driver_version}: torch.cuda.is_available() is False.",
            f"update JetPack to one that supports CUDA {cuda}, or install NVIDIA's Jetson build of torch "
            "for this JetPack (https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/)",
        )
    if verdict.level is DriverLevel.TOO_OLD:
        needs = floor.mvc if floor.mvc is not None else f"CUDA {cuda} support"
        return Finding(
            FindingCode.DRIVER_TOO_OLD,
            f"torch {ctx.build.version} needs NVIDIA driver {needs} or newer for CUDA {cuda}, but this "
            f"machine has {verdict.have}: torch.cuda.is_available() is False "
            "('The NVIDIA driver on your system is too old').",
            f"update the NVIDIA driver to {verdict.needed()} or newer, or install a build for an older CUDA: "
            + _target_hint(ctx),
        )
    if verdict.level is DriverLevel.MINOR_COMPAT:
        arch = ctx.reading.arch or ctx.knowledge.arch_list(
            ctx.build.version or "", ctx.build.variant or "", ctx.platform, ctx.machine
        )
        # Release wheels carry no PTX of their own (only 2.13.0's cu130/cu132 do); Triton and
        # torch.compile generate PTX, which a driver older than the build's CUDA cannot compile.
        jit = (
            "its PTX JIT, Triton and torch.compile"
            if arch is not None and arch.ptx
            else "Triton and torch.compile"
        )
        message = (
            f"the driver ({verdict.have}) does not support CUDA {cuda} itself (that needs "
            f"{verdict.needed()}), so torch runs through CUDA minor-version compatibility: {jit} may fail."
        )
        target = _target(ctx)
        if target is None or _unchanged(ctx, target):
            # No build of this release fits the driver better: `fix` would change nothing, so there
            # is nothing to fix, only what would change it.
            return Finding(
                FindingCode.DRIVER_MINOR_COMPAT,
                message,
                f"nothing to do now: no build of torch {ctx.build.release} fits this driver fully; "
                f"a driver update to {verdict.needed()} or newer would let {ctx.build.variant} run "
                "without compatibility mode",
                severity_override=Severity.INFO,
            )
        return Finding(
            FindingCode.DRIVER_MINOR_COMPAT,
            message,
            f"update the NVIDIA driver to {verdict.needed()} or newer, or install the "
            f"{target.variant} build, which fits this driver fully: {_target_hint(ctx)}",
        )
    return None


def _arch(ctx: _Ctx, fit: Fit) -> Finding | None:
    if fit.not_for_jetson:
        return Finding(
            FindingCode.GPU_ARCH_UNSUPPORTED,
            f"torch {ctx.build.version} is an aarch64 server (SBSA) build of CUDA {ctx.build.cuda}: "
            "PyPI's and download.pytorch.org's aarch64 wheels before CUDA 13 do not run on a Jetson, "
            f"whatever its JetPack, so it cannot use the {gpu_words(ctx.hardware.gpus)}.",
            "install NVIDIA's Jetson build of torch for this JetPack "
            "(https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/), "
            f"or a CUDA 13 build on JetPack 7 and newer: `{ctx.plan_cmd()}` shows what the index has",
        )
    uncovered = fit.uncovered
    if not uncovered:
        return None
    arch = fit.arch
    compiled = f"compiled for {arch.describe()}" if arch else f"built with CUDA {ctx.build.cuda}"
    ptx_only = any(g.coverage is Coverage.PTX for g in fit.gpus if g.gpu in uncovered)
    # Only 2.13.0's cu130/cu132 release wheels carry PTX (compute_120); JIT of it needs a driver
    # that supports the build's CUDA minor.
    why = (
        " (its only PTX, compute_"
        f"{arch.ptx.sm if arch and arch.ptx else '?'}, could be JIT-compiled for it only by a driver "
        f"supporting CUDA {ctx.build.cuda}, {fit.driver.needed()} or newer)"
        if ptx_only
        else ": it carries no PTX that could be compiled for it, so expect "
        "'no kernel image is available for execution on the device'"
    )
    return Finding(
        FindingCode.GPU_ARCH_UNSUPPORTED,
        f"torch {ctx.build.version} is {compiled}, which does not cover the {gpu_words(uncovered)}{why}.",
        _target_hint(ctx),
    )


def _newer_variant(ctx: _Ctx) -> Finding | None:
    build = ctx.build
    release = build.release
    if release is None or build.variant is None or build.cuda is None:
        return None
    rel = ctx.knowledge.release(release)
    if rel is None:
        return None
    newer = tuple(
        v
        for v in rel.variants_for(ctx.platform)
        if v.startswith("cu") and cuda_key(v) > cuda_key(build.variant)
    )
    choice = ctx.best_of(release, candidates=newer)
    if choice is None or choice[1].driver.level is not DriverLevel.FULL:
        return None
    variant = choice[0]
    # `fix` keeps a build that already fits fully, so this is only ever a choice made by hand.
    pip = ctx.pip_cmd(_Target(release, variant))
    fix = f"nothing needs doing (`{ctx.fix_cmd()}` keeps this build)"
    return Finding(
        FindingCode.NEWER_VARIANT_AVAILABLE,
        f"torch {build.version} works here, and the driver also supports the newer {variant} build of "
        f"torch {release} (CUDA {variant_cuda(variant)}), which fits every GPU.",
        f"{fix}; to switch anyway, by hand: {pip}" if pip else fix,
    )


def _spec_allows(spec: str | None, version: str) -> bool:
    if not spec:
        return True
    try:
        return SpecifierSet(spec, prereleases=True).contains(version.split("+", 1)[0], prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True


def _companion_findings(ctx: _Ctx) -> list[Finding]:
    build, kn, reading = ctx.build, ctx.knowledge, ctx.reading
    if build.version is None or build.release is None:
        return []
    findings: list[Finding] = []
    rel = kn.release(build.version)
    torch_release = build.release
    stable_abi_torch = Version(torch_release) >= kn.torchaudio_stable_abi_from

    def mismatch(name: str, info: CompanionInfo, wants: str) -> Finding:
        return Finding(
            FindingCode.COMPANION_MISMATCH,
            f"{name} {info.version} is not the release paired with torch {build.version} (that is {wants}); "
            f"importing it fails with errors like 'operator torchvision::nms does not exist'.",
            _target_hint(ctx),
        )

    # A companion whose own version does not parse cannot be paired; its import will tell.
    tv = (
        reading.torchvision if reading.torchvision and is_valid_version(reading.torchvision.version) else None
    )
    if tv is not None:
        if rel is not None and rel.torchvision is not None and release_minor(tv.version) != rel.torchvision:
            findings.append(mismatch("torchvision", tv, f"torchvision {rel.torchvision}.x"))
        elif not _spec_allows(tv.requires_torch, build.version):
            findings.append(
                mismatch(
                    "torchvision", tv, f"a torchvision whose requirement torch{tv.requires_torch} is met"
                )
            )

    ta = reading.torchaudio if reading.torchaudio and is_valid_version(reading.torchaudio.version) else None
    if ta is not None:
        ta_stable = kn.torchaudio_is_stable_abi(ta.version)
        if stable_abi_torch and not ta_stable:
            findings.append(
                mismatch("torchaudio", ta, f"torchaudio {kn.torchaudio_stable_abi_from}.x or newer")
            )
        elif not stable_abi_torch and rel is not None and release_minor(ta.version) != rel.torchaudio:
            findings.append(mismatch("torchaudio", ta, f"torchaudio {rel.torchaudio}.x"))
        elif not _spec_allows(ta.requires_torch, build.version):
            findings.append(
                mismatch("torchaudio", ta, f"a torchaudio whose requirement torch{ta.requires_torch} is met")
            )

    findings.extend(_variant_mismatches(ctx))
    return findings


def _variant_mismatches(ctx: _Ctx) -> list[Finding]:
    build, reading = ctx.build, ctx.reading
    if build.variant is None:
        return []
    out: list[Finding] = []
    for name, info in (("torchvision", reading.torchvision), ("torchaudio", reading.torchaudio)):
        if info is None:
            continue
        label = local_label(info.version)
        if label is None or label == build.variant or not is_valid_version(info.version):
            continue
        if name == "torchaudio" and ctx.knowledge.torchaudio_is_stable_abi(info.version):
            # torchaudio >= 2.11 tolerates a different CUDA minor; only the major must agree.
            torch_cuda, audio_cuda = variant_cuda(build.variant), variant_cuda(label)
            if torch_cuda and audio_cuda and torch_cuda.split(".")[0] == audio_cuda.split(".")[0]:
                continue
        out.append(
            Finding(
                FindingCode.VARIANT_MISMATCH,
                f"torch is the {build.variant} build but {name} {info.version} is the {label} build; "
                "the mixed pair fails at import or at the first GPU call.",
                "reinstall both from one index: " + _target_hint(ctx),
            )
        )
    return out


def diagnose(
    env: PythonEnv,
    reading: BuildReading | None,
    hardware: Hardware,
    knowledge: Knowledge,
    *,
    index_base: str = DEFAULT_INDEX_BASE,
) -> tuple[Finding, ...]:
    """All findings for one environment, most severe first.

    `index_base`: the index the hand commands in the fix texts name (`plan`'s `--index-base`).
    """
    if reading is None:
        return ()
    ctx = _Ctx(env, hardware, knowledge, reading.build, reading, index_base)
    build = reading.build
    if build.problems or build.version is None:
        return (_unreadable(ctx),)

    findings: list[Finding] = []
    # A driver that answered without listing GPUs says nothing about them: GPU rules stay silent.
    gpu_known = hardware.gpus_known
    if gpu_known and build.variant is not None:
        if not hardware.has_nvidia_gpu:
            if build.cuda is not None:
                findings.append(_cuda_without_gpu(ctx))
        elif build.cuda is None:
            if (f := _no_cuda_with_gpu(ctx)) is not None:
                findings.append(f)
        elif build.variant.startswith("cu"):
            fit = build_fit(
                knowledge,
                build.version,
                build.variant,
                hardware,
                arch=reading.arch,
                platform=env.platform,
                machine=ctx.machine,
            )
            for rule in (_driver(ctx), _arch(ctx, fit)):
                if rule is not None:
                    findings.append(rule)
    findings.extend(_companion_findings(ctx))
    if gpu_known and not findings and hardware.has_nvidia_gpu and (f := _newer_variant(ctx)):
        findings.append(f)
    order = {"error": 0, "warn": 1, "info": 2}
    return tuple(sorted(findings, key=lambda f: order[f.severity.value]))


def interrupted_finding(env: PythonEnv, interrupted: Sequence[Interrupted]) -> Finding | None:
    """`fix-interrupted`: a fix was killed half-way here and its snapshot is still pending.

    Whatever else the files say, the environment is neither as it was nor as planned, so it is
    never "ok". The next `fix --env` restores the snapshot before anything else (it is the one
    way to restore today), so that is the command given.
    """
    if not interrupted:
        return None
    oldest = interrupted[0]
    command = f"torchdoctor fix --env {quote(str(env.root), env.platform)}"
    when = (
        time.strftime(" on %Y-%m-%d at %H:%M UTC", time.gmtime(oldest.created))
        if oldest.created is not None
        else ""
    )
    if not oldest.readable:
        return Finding(
            FindingCode.FIX_INTERRUPTED,
            "a torchdoctor fix was interrupted here and its saved copy cannot be read; the "
            "environment may be half-installed",
            f"run `{command}`: it sets the unreadable copy aside and plans from what is installed",
        )
    before = f"torch {oldest.torch_before}" if oldest.torch_before else "the environment without torch"
    return Finding(
        FindingCode.FIX_INTERRUPTED,
        f"a torchdoctor fix was interrupted here{when} and left the environment half-changed; "
        f"{before} was saved before it started",
        f"run `{command}`: it first restores {before} exactly, then offers the repair again",
    )
