"""The rules: (hardware, environment, build, knowledge) -> findings. Pure; no I/O.

Each finding says in one sentence what is wrong and gives the command that fixes it. Rules that
need a fact the data does not have stay silent rather than guess: a false alarm teaches people to
ignore the tray icon.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
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
    Platform,
    PythonEnv,
    TorchBuild,
)
from torchdoctor.service.rules.fit import (
    DriverLevel,
    Fit,
    best_variant,
    build_fit,
    driver_verdict,
    gpu_coverage,
)


@dataclass(frozen=True, slots=True)
class _Ctx:
    env: PythonEnv
    hardware: Hardware
    knowledge: Knowledge
    build: TorchBuild

    @property
    def platform(self) -> Platform:
        """The OS the environment's wheels are for (arch lists differ between Linux and Windows)."""
        return self.env.platform

    def fix_cmd(self) -> str:
        return f"torchdoctor fix --env {quote(str(self.env.root), self.env.platform)}"

    def pip_cmd(self, requirements: Iterable[str], variant: str) -> str:
        """`pip install torch==2.7.1+cu128 ... --index-url .../cu128`.

        Pinned with the local label: `torch==2.7.1` is already satisfied by 2.7.1+cpu, and
        `--force-reinstall` would reinstall every dependency (gigabytes of nvidia-* wheels) too.
        """
        python = quote(str(self.env.python), self.env.platform)
        reqs = " ".join(f"{r}+{variant}" if "==" in r and "+" not in r else r for r in requirements)
        return f"{python} -m pip install {reqs} --index-url {DEFAULT_INDEX_BASE}/{variant}"


def quote(text: str, platform: Platform) -> str:
    """Quote a path for the shell a person on that platform will paste it into."""
    if platform is Platform.WINDOWS:
        return f'"{text}"' if any(c in text for c in " &()[]{}^=;!+,`~") else text
    return shlex.quote(text)


def gpu_words(gpus: Iterable[Gpu]) -> str:
    """ "NVIDIA GeForce RTX 5090 (sm_120)" or a joined list for several GPUs."""
    parts: list[str] = []
    for g in gpus:
        cc = g.compute_capability
        parts.append(f"{g.name} (sm_{cc.sm})" if cc else g.name)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _requirements(ctx: _Ctx, reading: BuildReading, release: str) -> list[str]:
    """torch==X plus the companions the environment has, at their paired versions where known."""
    reqs = [f"torch=={release}"]
    for name, info in (("torchvision", reading.torchvision), ("torchaudio", reading.torchaudio)):
        if info is None:
            continue
        paired = ctx.knowledge.paired_patch(release, name)
        reqs.append(f"{name}=={paired}" if paired else name)
    return reqs


def _target_hint(ctx: _Ctx, reading: BuildReading) -> str:
    """The fix for a build that does not fit: `torchdoctor fix`, plus the pip command when we can
    name the exact build (same release, a variant the data says fits)."""
    fix = ctx.fix_cmd()
    release = ctx.build.release
    if release is None or not ctx.hardware.has_nvidia_gpu:
        return f"run `{fix}`"
    choice = best_variant(ctx.knowledge, release, ctx.hardware, platform=ctx.platform)
    if choice is not None:
        variant = choice[0]
        pip = ctx.pip_cmd(_requirements(ctx, reading, release), variant)
        return f"run `{fix}`, or by hand: {pip}"
    newer = _newest_fitting_release(ctx)
    if newer is not None:
        minor, variant = newer
        return f"run `{fix}` (no build of torch {release} fits; it would move to torch {minor} {variant})"
    return f"run `{fix}` to see the options (no known CUDA build of torch fits this machine)"


def _newest_fitting_release(ctx: _Ctx) -> tuple[str, str] | None:
    releases = sorted(ctx.knowledge.releases.values(), key=lambda r: Version(r.minor), reverse=True)
    for rel in releases:
        choice = best_variant(ctx.knowledge, f"{rel.minor}.0", ctx.hardware, platform=ctx.platform)
        if choice is not None:
            return rel.minor, choice[0]
    return None


def _gpu_usable(ctx: _Ctx) -> bool:
    """Some known CUDA build of torch could use at least one of the GPUs (ignoring the driver)."""
    for rel in ctx.knowledge.releases.values():
        for variant in rel.variants:
            if not variant.startswith("cu"):
                continue
            arch = ctx.knowledge.arch_list(f"{rel.minor}.0", variant, ctx.platform)
            if arch is None:
                continue
            cov = gpu_coverage(ctx.knowledge, arch, variant_cuda(variant), ctx.hardware.gpus)
            if any(c.coverage in (Coverage.SASS, Coverage.PTX, None) for c in cov):
                return True
    return False


# --- rules -------------------------------------------------------------------------------------


def _unreadable(ctx: _Ctx) -> Finding:
    problems = "; ".join(ctx.build.problems)
    return Finding(
        FindingCode.TORCH_UNREADABLE,
        f"torch here is half-installed or damaged: {problems}.",
        f"reinstall it: run `{ctx.fix_cmd()}`, or by hand: "
        f"{quote(str(ctx.env.python), ctx.env.platform)} -m pip install --force-reinstall torch",
    )


def _no_cuda_with_gpu(ctx: _Ctx, reading: BuildReading) -> Finding | None:
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
        _target_hint(ctx, reading),
    )


def _cuda_without_gpu(ctx: _Ctx) -> Finding:
    build = ctx.build
    release = build.release or "the same version"
    return Finding(
        FindingCode.CUDA_BUILD_WITHOUT_GPU,
        f"torch {build.version} is a CUDA build, but this machine has no NVIDIA GPU or driver: "
        "it runs on the CPU only and carries gigabytes of CUDA libraries it cannot use.",
        "if this environment is meant for this machine, switch to the CPU build: "
        + ctx.pip_cmd([f"torch=={release}"], "cpu"),
    )


def _driver(ctx: _Ctx, reading: BuildReading) -> Finding | None:
    cuda = ctx.build.cuda
    if cuda is None:
        return None
    verdict = driver_verdict(ctx.knowledge, cuda, ctx.hardware)
    floor = verdict.floor
    if verdict.level is DriverLevel.TOO_OLD:
        needs = floor.mvc if floor.mvc is not None else f"CUDA {cuda} support"
        return Finding(
            FindingCode.DRIVER_TOO_OLD,
            f"torch {ctx.build.version} needs NVIDIA driver {needs} or newer for CUDA {cuda}, but this "
            f"machine has {verdict.have}: torch.cuda.is_available() is False "
            "('The NVIDIA driver on your system is too old').",
            f"update the NVIDIA driver to {verdict.needed()} or newer, or install a build for an older CUDA: "
            + _target_hint(ctx, reading),
        )
    if verdict.level is DriverLevel.MINOR_COMPAT:
        return Finding(
            FindingCode.DRIVER_MINOR_COMPAT,
            f"the driver ({verdict.have}) is older than CUDA {cuda}'s own ({verdict.needed()}), so torch "
            f"runs through CUDA minor-version compatibility: PTX JIT, Triton and torch.compile may fail.",
            f"update the NVIDIA driver to {verdict.needed()} or newer, or {_target_hint(ctx, reading)}",
        )
    return None


def _arch(ctx: _Ctx, reading: BuildReading, fit: Fit) -> Finding | None:
    uncovered = fit.uncovered
    if not uncovered:
        return None
    arch = fit.arch
    compiled = f"compiled for {arch.describe()}" if arch else f"built with CUDA {ctx.build.cuda}"
    ptx_only = any(g.coverage is Coverage.PTX for g in fit.gpus if g.gpu in uncovered)
    why = (
        " (it could JIT the embedded PTX only with the CUDA toolkit's own driver, "
        f"{fit.driver.needed()} or newer)"
        if ptx_only
        else ": expect 'no kernel image is available for execution on the device'"
    )
    return Finding(
        FindingCode.GPU_ARCH_UNSUPPORTED,
        f"torch {ctx.build.version} is {compiled}, which does not cover the {gpu_words(uncovered)}{why}.",
        _target_hint(ctx, reading),
    )


def _newer_variant(ctx: _Ctx, reading: BuildReading) -> Finding | None:
    build = ctx.build
    release = build.release
    if release is None or build.variant is None or build.cuda is None:
        return None
    rel = ctx.knowledge.release(release)
    if rel is None:
        return None
    newer = tuple(v for v in rel.variants if v.startswith("cu") and cuda_key(v) > cuda_key(build.variant))
    choice = best_variant(ctx.knowledge, release, ctx.hardware, candidates=newer, platform=ctx.platform)
    if choice is None or choice[1].driver.level is not DriverLevel.FULL:
        return None
    variant = choice[0]
    return Finding(
        FindingCode.NEWER_VARIANT_AVAILABLE,
        f"torch {build.version} works here, and the driver also supports the newer {variant} build of "
        f"torch {release} (CUDA {variant_cuda(variant)}), which fits every GPU.",
        f"optional: {ctx.pip_cmd(_requirements(ctx, reading, release), variant)}",
    )


def _spec_allows(spec: str | None, version: str) -> bool:
    if not spec:
        return True
    try:
        return SpecifierSet(spec, prereleases=True).contains(version.split("+", 1)[0], prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True


def _companion_findings(ctx: _Ctx, reading: BuildReading) -> list[Finding]:
    build, kn = ctx.build, ctx.knowledge
    if build.version is None or build.release is None:
        return []
    findings: list[Finding] = []
    rel = kn.release(build.version)
    torch_release = build.release
    stable_abi_torch = Version(torch_release) >= kn.torchaudio_stable_abi_from

    def mismatch(name: str, info: CompanionInfo, wants: str) -> Finding:
        paired = kn.paired_patch(torch_release, name)
        target = f"{name}=={paired}" if paired else wants
        variant = build.variant or "cpu"
        return Finding(
            FindingCode.COMPANION_MISMATCH,
            f"{name} {info.version} is not the release paired with torch {build.version} (that is {wants}); "
            f"importing it fails with errors like 'operator torchvision::nms does not exist'.",
            f"run `{ctx.fix_cmd()}`, or by hand: "
            + ctx.pip_cmd([f"torch=={torch_release}", target], variant),
        )

    # A companion whose own version does not parse cannot be paired; its import will tell.
    tv = (
        reading.torchvision if reading.torchvision and is_valid_version(reading.torchvision.version) else None
    )
    if tv is not None:
        if rel is not None and release_minor(tv.version) != rel.torchvision:
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

    findings.extend(_variant_mismatches(ctx, reading))
    return findings


def _variant_mismatches(ctx: _Ctx, reading: BuildReading) -> list[Finding]:
    build = ctx.build
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
        release = build.release or ""
        out.append(
            Finding(
                FindingCode.VARIANT_MISMATCH,
                f"torch is the {build.variant} build but {name} {info.version} is the {label} build; "
                "the mixed pair fails at import or at the first GPU call.",
                f"reinstall both from one index: run `{ctx.fix_cmd()}`, or by hand: "
                + ctx.pip_cmd(_requirements(ctx, reading, release), build.variant),
            )
        )
    return out


def diagnose(
    env: PythonEnv, reading: BuildReading | None, hardware: Hardware, knowledge: Knowledge
) -> tuple[Finding, ...]:
    """All findings for one environment, most severe first."""
    if reading is None:
        return ()
    ctx = _Ctx(env, hardware, knowledge, reading.build)
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
            if (f := _no_cuda_with_gpu(ctx, reading)) is not None:
                findings.append(f)
        elif build.variant.startswith("cu"):
            fit = build_fit(
                knowledge, build.version, build.variant, hardware, arch=reading.arch, platform=env.platform
            )
            for rule in (_driver(ctx, reading), _arch(ctx, reading, fit)):
                if rule is not None:
                    findings.append(rule)
    findings.extend(_companion_findings(ctx, reading))
    if gpu_known and not findings and hardware.has_nvidia_gpu and (f := _newer_variant(ctx, reading)):
        findings.append(f)
    order = {"error": 0, "warn": 1, "info": 2}
    return tuple(sorted(findings, key=lambda f: order[f.severity.value]))
