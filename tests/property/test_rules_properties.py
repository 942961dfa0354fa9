"""Properties of the rules over any GPU set, driver and known build (hypothesis)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.tags import Tag
from packaging.version import Version

from tests.support.hw import env, reading
from torchdoctor.service.facts.knowledge import Coverage, DriverVersion, load_knowledge
from torchdoctor.service.facts.variants import cuda_key, variant_cuda
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.policy import PlanRefusedError, Published, choose_torch
from torchdoctor.service.models import (
    ComputeCapability,
    Gpu,
    Hardware,
    HardwareSource,
    Platform,
    ProbeState,
    Severity,
)
from torchdoctor.service.rules.diagnose import diagnose
from torchdoctor.service.rules.fit import FitLevel, best_variant, build_fit

KN = load_knowledge(Path("/nonexistent"))
CCS = [
    "3.5",
    "3.7",
    "5.0",
    "5.2",
    "6.0",
    "6.1",
    "7.0",
    "7.5",
    "8.0",
    "8.6",
    "8.7",
    "8.9",
    "9.0",
    "10.0",
    "10.3",
    "12.0",
    "12.1",
]
DRIVERS = [
    "450.80.02",
    "470.82.01",
    "525.60.13",
    "528.33",
    "535.104.05",
    "550.54.14",
    "560.94",
    "566.36",
    "572.16",
    "576.57",
    "580.65.06",
    "580.95.05",
    "595.58.03",
]
BUILDS = [(f"{rel.minor}.0", v) for rel in KN.releases.values() for v in rel.variants if v.startswith("cu")]

gpus = st.lists(st.sampled_from(CCS), min_size=1, max_size=3).map(
    lambda ccs: tuple(Gpu(i, f"GPU {cc}", ComputeCapability.parse(cc)) for i, cc in enumerate(ccs))
)
machines = st.builds(
    lambda g, d, p: Hardware(HardwareSource.FILE, p, d, None, g),
    gpus,
    st.sampled_from(DRIVERS),
    st.sampled_from([Platform.LINUX, Platform.WINDOWS]),
)


def assert_fits(hw: Hardware, version: str, variant: str) -> None:
    """Checked from the knowledge tables directly, not through fit.py (which it is testing)."""
    cuda = variant_cuda(variant)
    assert cuda is not None and hw.driver_version is not None
    floor = KN.driver_floor(cuda, hw.platform)
    assert floor.mvc is not None
    driver = DriverVersion.parse(hw.driver_version)
    assert driver >= floor.mvc, f"{variant} needs {floor.mvc}, driver {driver}"
    arch = KN.arch_list(version, variant, hw.platform)
    assert arch is not None
    for gpu in hw.gpus:
        assert gpu.compute_capability is not None
        cov = KN.coverage(arch, gpu.compute_capability, cuda)
        assert cov is not Coverage.NONE, f"{variant} does not cover {gpu.compute_capability}"
        if cov is Coverage.PTX:
            assert floor.toolkit is not None and driver >= floor.toolkit


@settings(max_examples=400, deadline=None)
@given(hw=machines, build=st.sampled_from(BUILDS))
def test_a_build_judged_healthy_meets_its_driver_floor_and_covers_every_gpu(
    hw: Hardware, build: tuple[str, str]
) -> None:
    """Judged healthy (no error) => the driver meets the CUDA major's floor and every GPU has code."""
    version, variant = build
    findings = diagnose(env(hw.platform), reading(f"{version}+{variant}"), hw, KN)
    if not any(f.severity is Severity.ERROR for f in findings):
        assert_fits(hw, version, variant)


@settings(max_examples=300, deadline=None)
@given(hw=machines, release=st.sampled_from(sorted(KN.releases)))
def test_best_variant_is_never_newer_than_the_driver_allows_and_covers_every_gpu(
    hw: Hardware, release: str
) -> None:
    """The chosen variant fits by the tables, and no newer variant of the release fits better."""
    version = f"{release}.0"
    choice = best_variant(KN, version, hw)
    rel = KN.releases[release]
    fits = {v: build_fit(KN, version, v, hw) for v in rel.variants if v.startswith("cu")}
    if choice is None:
        assert all(f.level is FitLevel.NONE for f in fits.values())
        return
    variant, fit = choice
    assert_fits(hw, version, variant)
    newer = [v for v in fits if cuda_key(v) > cuda_key(variant)]
    if fit.level is FitLevel.FULL:
        assert all(fits[v].level is not FitLevel.FULL for v in newer)
    else:
        assert all(f.level is not FitLevel.FULL for f in fits.values())
        assert all(fits[v].level is FitLevel.NONE for v in newer)


GPU_FINDINGS = {
    "cpu-build-with-gpu",
    "cuda-build-without-gpu",
    "driver-too-old",
    "driver-minor-compat",
    "gpu-arch-unsupported",
    "newer-variant-available",
}
blind = st.builds(
    lambda d, state, p: Hardware(HardwareSource.NVML, p, d, None, (), state),
    st.sampled_from([*DRIVERS, None]),
    st.sampled_from([ProbeState.PARTIAL, ProbeState.RESTART_NEEDED, ProbeState.NO_DRIVER, ProbeState.ERROR]),
    st.sampled_from([Platform.LINUX, Platform.WINDOWS]),
)
partly = st.builds(
    lambda ccs, d, p: Hardware(
        HardwareSource.FILE,
        p,
        d,
        None,
        tuple(Gpu(i, "GPU", None if cc is None else ComputeCapability.parse(cc)) for i, cc in enumerate(ccs)),
    ),
    st.lists(st.sampled_from([*CCS, None]), min_size=1, max_size=3),
    st.sampled_from([*DRIVERS, None]),
    st.sampled_from([Platform.LINUX, Platform.WINDOWS]),
)


@settings(max_examples=200, deadline=None)
@given(hw=blind, build=st.sampled_from([*BUILDS, ("2.7.0", "cpu")]))
def test_a_driver_that_lists_no_gpus_never_raises_a_gpu_finding(hw: Hardware, build: tuple[str, str]) -> None:
    version, variant = build
    findings = diagnose(env(hw.platform), reading(f"{version}+{variant}"), hw, KN)
    assert not {f.code.value for f in findings} & GPU_FINDINGS


@settings(max_examples=300, deadline=None)
@given(hw=partly, build=st.sampled_from(BUILDS))
def test_unknown_facts_never_become_alarms(hw: Hardware, build: tuple[str, str]) -> None:
    """An unknown driver raises no driver finding; a GPU of unknown capability no arch finding."""
    version, variant = build
    findings = diagnose(env(hw.platform), reading(f"{version}+{variant}"), hw, KN)
    codes = {f.code.value for f in findings}
    if hw.driver_version is None:
        assert not codes & {"driver-too-old", "driver-minor-compat"}
    if all(g.compute_capability is None for g in hw.gpus):
        assert "gpu-arch-unsupported" not in codes


@settings(max_examples=200, deadline=None)
@given(hw=machines, build=st.sampled_from(BUILDS))
def test_every_finding_is_one_sentence_with_a_fix(hw: Hardware, build: tuple[str, str]) -> None:
    version, variant = build
    for finding in diagnose(env(hw.platform), reading(f"{version}+{variant}"), hw, KN):
        assert finding.message.endswith(".") and "\n" not in finding.message
        assert finding.fix.strip()


@settings(max_examples=300, deadline=None)
@given(hw=machines, build=st.sampled_from(BUILDS))
def test_a_hand_command_is_the_build_fix_would_install_and_info_asks_for_no_fix(
    hw: Hardware, build: tuple[str, str]
) -> None:
    """A hand command pins torch to a build that fits this machine, from that build's index, and
    differs from what is installed; an info finding never tells the user to run `fix`."""
    version, variant = build
    for finding in diagnose(env(hw.platform), reading(f"{version}+{variant}"), hw, KN):
        if finding.severity is Severity.INFO:
            assert not finding.fix.startswith("run `torchdoctor fix"), finding.fix
            assert "update the NVIDIA driver" not in finding.fix
        match = re.search(
            r"by hand: \S+ -m pip install torch==([\d.]+)\+(\w+) --index-url (\S+)$", finding.fix
        )
        if match is None:
            continue
        target, target_variant, url = match.groups()
        assert url == f"https://download.pytorch.org/whl/{target_variant}"
        assert f"{target}+{target_variant}" != f"{version}+{variant}"
        assert build_fit(KN, target, target_variant, hw, platform=hw.platform).level is not FitLevel.NONE


def _published_everything() -> Published:
    """Every known (release, CUDA variant) as one py3-none-any wheel, as `plan` would see it."""
    files: dict[str, dict[str, tuple[IndexFile, ...]]] = {}
    for version, variant in BUILDS:
        name = f"torch-{version}+{variant}-py3-none-any.whl"
        wheel = IndexFile(
            project="torch",
            filename=name,
            url=f"https://download.pytorch.org/whl/{variant}/{name}",
            version=Version(f"{version}+{variant}"),
            tags=frozenset({ANY}),
            sha256="0" * 64,
            requires_python=None,
            yanked=False,
            size=1,
        )
        per = files.setdefault(variant, {})
        per["torch"] = (*per.get("torch", ()), wheel)
    return Published(files)


ANY = Tag("py3", "none", "any")
EVERYTHING = _published_everything()


@settings(max_examples=300, deadline=None)
@given(hw=machines, build=st.sampled_from(BUILDS))
def test_check_and_plan_agree_on_whether_there_is_anything_to_fix(
    hw: Hardware, build: tuple[str, str]
) -> None:
    """ok/info => plan keeps the installed build; warn/error => plan installs another one (or refuses)."""
    version, variant = build
    installed = reading(f"{version}+{variant}")
    findings = diagnose(env(hw.platform), installed, hw, KN)
    try:
        choice = choose_torch(
            installed=installed,
            hardware=hw,
            knowledge=KN,
            published=EVERYTHING,
            tags=[ANY],
            platform=hw.platform,
        )
    except PlanRefusedError:
        assert any(f.severity is not Severity.INFO for f in findings)
        return
    keeps = str(choice.file.version) == f"{version}+{variant}"
    needs_fixing = any(f.severity is not Severity.INFO for f in findings)
    assert keeps is not needs_fixing, ([f.fix for f in findings], str(choice.file.version))
