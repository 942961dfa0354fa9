"""The audit's corrections (issue 11), each against its source, through the real knowledge and the
real fit rules: one answer per machine from `fit` (plan) and `diagnose` (check)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.version import Version

from tests.support import fake_nvml as fk
from tests.support.hw import H100, RTX_4090, RTX_5090, V100, env, hardware, reading
from torchdoctor.service.errors import HardwareFileError
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.facts.variants import machine_of_tags
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.policy import PlanRefusedError, Published, choose_torch
from torchdoctor.service.models import Hardware, Platform
from torchdoctor.service.probe.hardware import hardware_from_json, probe_hardware
from torchdoctor.service.proc import Completed
from torchdoctor.service.rules.diagnose import diagnose
from torchdoctor.service.rules.fit import DriverLevel, FitLevel, best_variant, build_fit, driver_verdict

KN = load_knowledge(Path("/nonexistent"))
T4 = ("Tesla T4", "7.5")
THOR = ("NVIDIA Thor", "11.0")
ORIN = ("Orin (nvgpu)", "8.7")
GB10 = ("NVIDIA GB10", "12.1")


def arch_text(
    version: str, variant: str, platform: Platform = Platform.LINUX, machine: str | None = None
) -> str:
    arch = KN.arch_list(version, variant, platform, machine)
    assert arch is not None
    return arch.describe()


# (torch, variant, OS, machine, expected list as `describe()` says it, source)
ARCH_LISTS = [
    # Volta left cu128/cu129 in 2.11: pytorch/pytorch PR #172598, RFC #172352.
    ("2.10.0", "cu128", Platform.LINUX, None, "sm_70, sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    ("2.11.0", "cu128", Platform.LINUX, None, "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    ("2.11.0", "cu129", Platform.LINUX, None, "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    # PTX: release cu130/cu132 wheels carry none (PR #175567), except 2.13.0's 12.0+PTX (#188914/#188925).
    ("2.11.0", "cu130", Platform.LINUX, None, "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    ("2.12.1", "cu132", Platform.LINUX, None, "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    (
        "2.13.0",
        "cu130",
        Platform.LINUX,
        None,
        "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120, compute_120 (PTX)",
    ),
    (
        "2.13.0",
        "cu132",
        Platform.LINUX,
        None,
        "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120, compute_120 (PTX)",
    ),
    ("2.14.1", "cu130", Platform.LINUX, None, "sm_75, sm_80, sm_86, sm_90, sm_100, sm_120"),
    # aarch64: .ci/manywheel/build_env_setup.py TORCH_CUDA_ARCH_LIST_TABLE.
    ("2.13.0", "cu126", Platform.LINUX, "aarch64", "sm_80, sm_90"),
    ("2.13.0", "cu130", Platform.LINUX, "aarch64", "sm_80, sm_90, sm_100, sm_110, sm_120"),
    ("2.14.0", "cu132", Platform.LINUX, "aarch64", "sm_80, sm_90, sm_100, sm_110, sm_120"),
]


@pytest.mark.parametrize(("version", "variant", "platform", "machine", "expected"), ARCH_LISTS)
def test_arch_lists_follow_their_sources(
    version: str, variant: str, platform: Platform, machine: str | None, expected: str
) -> None:
    assert arch_text(version, variant, platform, machine) == expected


def test_an_aarch64_wheel_without_its_own_list_gets_the_x86_list_marked_inferred() -> None:
    arch = KN.arch_list("2.8.0", "cu129", Platform.LINUX, "aarch64")
    assert arch is not None and arch.inferred


@pytest.mark.parametrize(
    ("tags", "machine"),
    [
        (["manylinux_2_28_aarch64", "linux_aarch64", "any"], "aarch64"),
        (["manylinux_2_28_x86_64", "any"], "x86_64"),
        (["win_amd64", "any"], "x86_64"),
        (["any"], "x86_64"),
    ],
)
def test_the_machine_comes_from_the_interpreters_tags(tags: list[str], machine: str) -> None:
    assert machine_of_tags(tags) == machine


# (name, hardware, CUDA of the build, expected driver level). NVIDIA Table 3 lists the driver each
# toolkit update ships; the first driver of a CUDA minor is its GA one.
DRIVERS = [
    ("12.6 GA driver, number only", hardware("560.28.03", None), "12.6", DriverLevel.FULL),
    (
        "Windows 12.6 GA driver, number only",
        hardware("560.76", None, platform=Platform.WINDOWS),
        "12.6",
        DriverLevel.FULL,
    ),
    ("13.0 GA driver", hardware("580.65.06", None), "13.0", DriverLevel.FULL),
    ("580.82.07 (13.0 Update 1) runs cu130 fully", hardware("580.82.07", None), "13.0", DriverLevel.FULL),
    ("13.2 GA driver", hardware("595.45.04", None), "13.2", DriverLevel.FULL),
    ("a 13.0 driver runs 13.2 through MVC", hardware("580.82.07", None), "13.2", DriverLevel.MINOR_COMPAT),
    # The driver's own CUDA version decides where known, whatever the number.
    ("driver CUDA 13.0, cu130", hardware("580.82.07", "13.0"), "13.0", DriverLevel.FULL),
    ("driver CUDA 13.0, cu132", hardware("580.82.07", "13.0"), "13.2", DriverLevel.MINOR_COMPAT),
    ("driver CUDA 13.4, cu134", hardware("610.80", "13.4"), "13.4", DriverLevel.FULL),
    ("driver CUDA 12.9, cu130", hardware("575.57.08", "12.9"), "13.0", DriverLevel.TOO_OLD),
    ("driver CUDA 13.0, cu126 (older major)", hardware("580.82.07", "13.0"), "12.6", DriverLevel.FULL),
    # 13.4's GA driver number is not known: a number alone can only say MVC.
    ("a number alone for 13.4", hardware("620.10", None), "13.4", DriverLevel.MINOR_COMPAT),
    # Windows: an R580 driver supports CUDA 13.0 only; cu132 runs through MVC.
    ("Windows R580, cu130", hardware("581.15", None, platform=Platform.WINDOWS), "13.0", DriverLevel.FULL),
    (
        "Windows R580, cu132",
        hardware("581.15", None, platform=Platform.WINDOWS),
        "13.2",
        DriverLevel.MINOR_COMPAT,
    ),
    ("Windows R595, cu132", hardware("595.97", None, platform=Platform.WINDOWS), "13.2", DriverLevel.FULL),
    (
        "Windows R580 with its CUDA 13.0, cu132",
        hardware("581.15", "13.0", platform=Platform.WINDOWS),
        "13.2",
        DriverLevel.MINOR_COMPAT,
    ),
]


@pytest.mark.parametrize(("name", "hw", "cuda", "level"), DRIVERS, ids=[d[0] for d in DRIVERS])
def test_driver_levels(name: str, hw: Hardware, cuda: str, level: DriverLevel) -> None:
    assert driver_verdict(KN, cuda, hw).level is level


def _file(version: str) -> IndexFile:
    return IndexFile(
        project="torch",
        filename=f"torch-{version}-cp312-cp312-manylinux_2_28_x86_64.whl",
        url=f"https://download.pytorch.org/whl/torch-{version}-cp312-cp312-manylinux_2_28_x86_64.whl",
        version=Version(version),
        tags=frozenset({Tag("cp312", "cp312", "manylinux_2_28_x86_64")}),
        sha256="0" * 64,
        requires_python=">=3.10",
        yanked=False,
        size=1000,
    )


def _published(release: str, machine: str = "x86_64") -> Published:
    variants = KN.releases[".".join(release.split(".")[:2])].variants
    tag = f"manylinux_2_28_{machine}"
    files = {}
    for v in variants:
        f = _file(f"{release}+{v}")
        f = dataclasses.replace(
            f,
            filename=f.filename.replace("manylinux_2_28_x86_64", tag),
            tags=frozenset({Tag("cp312", "cp312", tag)}),
        )
        files[v] = {"torch": (f,)}
    return Published(files)


def _plan_variant(hw: Hardware, installed: str | None, release: str, machine: str = "x86_64") -> str:
    tags = [Tag("cp312", "cp312", f"manylinux_2_28_{machine}"), Tag("py3", "none", "any")]
    choice = choose_torch(
        installed=reading(installed) if installed else None,
        hardware=hw,
        knowledge=KN,
        published=_published(release, machine),
        tags=tags,
    )
    return choice.variant


def test_an_rtx_4090_on_580_82_07_with_2_13_gets_cu130_quietly() -> None:
    """The issue's case: planned onto cu126 and warned about MVC before; cu130, no finding now."""
    for hw in (hardware("580.82.07", None, RTX_4090), hardware("580.82.07", "13.0", RTX_4090)):
        assert _plan_variant(hw, "2.13.0+cu130", "2.13.0") == "cu130"
        assert _plan_variant(hw, None, "2.13.0") == "cu130"
        choice = best_variant(KN, "2.13.0", hw)
        assert choice is not None and choice[0] == "cu130"
        assert diagnose(env(), reading("2.13.0+cu130"), hw, KN) == ()


def test_a_v100_with_2_11_is_planned_onto_cu126_and_check_agrees() -> None:
    hw = hardware("575.57.08", "12.9", V100)
    assert _plan_variant(hw, "2.11.0+cu128", "2.11.0") == "cu126"
    (finding,) = diagnose(env(), reading("2.11.0+cu128"), hw, KN)
    assert finding.code.value == "gpu-arch-unsupported"
    assert "torch==2.11.0+cu126" in finding.fix


def test_windows_r580_ranks_cu130_above_cu132() -> None:
    hw = hardware("581.15", None, RTX_5090, platform=Platform.WINDOWS)
    choice = best_variant(KN, "2.13.0", hw, platform=Platform.WINDOWS)
    assert choice is not None and choice[0] == "cu130"
    assert build_fit(KN, "2.13.0", "cu132", hw).level is FitLevel.MINOR_COMPAT


def test_cu134_is_for_linux_only() -> None:
    hw = hardware("620.10", "13.4", RTX_5090, platform=Platform.WINDOWS)
    choice = best_variant(KN, "2.14.1", hw, platform=Platform.WINDOWS)
    assert choice is not None and choice[0] == "cu132"
    linux = best_variant(
        KN, "2.14.1", dataclasses.replace(hw, platform=Platform.LINUX), platform=Platform.LINUX
    )
    assert linux is not None and linux[0] == "cu134"


def test_a_t4_on_an_aarch64_server_is_not_planned_onto_cu130() -> None:
    """aarch64 cu130 has no sm_75 (build_env_setup.py); x86_64 cu130 has."""
    hw = dataclasses.replace(hardware("580.82.07", "13.0", T4), machine="aarch64")
    assert build_fit(KN, "2.13.0", "cu130", hw).level is FitLevel.NONE
    assert build_fit(KN, "2.13.0", "cu130", hw, machine="x86_64").level is FitLevel.FULL
    with pytest.raises(Exception, match="no code for"):
        _plan_variant(hw, "2.13.0+cu130", "2.13.0", machine="aarch64")


def test_an_h100_on_aarch64_gets_the_newest_fitting_variant() -> None:
    hw = dataclasses.replace(hardware("580.82.07", "13.0", H100), machine="aarch64")
    assert _plan_variant(hw, None, "2.13.0", machine="aarch64") == "cu130"


def test_torch_2_15_is_known_with_cu132_as_pypis_linux_default() -> None:
    rel = KN.release("2.15.0")
    assert rel is not None and rel.pypi_linux == "cu132" and rel.torchvision is None
    assert KN.newest_release() == "2.15"
    assert KN.newest_cuda() == "13.4"


@pytest.mark.parametrize(
    ("torch", "project", "paired"),
    [
        ("2.12.0", "torchvision", "0.27.0"),
        ("2.12.1", "torchvision", "0.27.1"),
        ("2.14.0", "torchvision", "0.29.0"),
    ],
)
def test_patch_pairs_follow_the_companions_own_pins(torch: str, project: str, paired: str) -> None:
    """torchvision's METADATA: 0.27.0 requires torch==2.12.0, 0.27.1 torch==2.12.1, 0.29.0 torch==2.14.0."""
    assert KN.paired_patch(torch, project) == paired


# --- Jetson ----------------------------------------------------------------------------------


def jetson(l4t: str, cuda: str | None, *gpus: tuple[str, str]) -> Hardware:
    return dataclasses.replace(hardware(l4t, cuda, *gpus), tegra=True, machine="aarch64")


def test_an_l4t_release_is_not_judged_as_a_desktop_driver() -> None:
    hw = jetson("35.3.1", None, ORIN)
    assert driver_verdict(KN, "13.0", hw).level is DriverLevel.UNKNOWN
    assert driver_verdict(KN, "12.6", hw).level is DriverLevel.UNKNOWN


def test_pre_cuda_13_aarch64_wheels_do_not_run_on_jetson_and_check_says_so_plainly() -> None:
    hw = jetson("36.4.3", "12.6", ORIN)
    fit = build_fit(KN, "2.9.0", "cu126", hw)
    assert fit.level is FitLevel.NONE and fit.not_for_jetson
    findings = diagnose(env(), reading("2.9.0+cu126"), hw, KN)
    codes = [f.code.value for f in findings]
    assert "driver-too-old" not in codes
    (finding,) = findings
    assert "Jetson" in finding.message and "too old" not in finding.message


def test_a_cuda_13_wheel_on_thor_is_judged_by_its_cuda_version() -> None:
    hw = jetson("38.2.0", "13.0", THOR)
    assert build_fit(KN, "2.13.0", "cu130", hw).level is FitLevel.FULL
    assert diagnose(env(), reading("2.13.0+cu130"), hw, KN) == ()


def test_gb10_runs_aarch64_cu130_through_sm_120() -> None:
    hw = dataclasses.replace(hardware("580.95.05", "13.0", GB10), machine="aarch64")
    assert build_fit(KN, "2.13.0", "cu130", hw).level is FitLevel.FULL


# --- the probe's part: a Jetson and the host's machine ---------------------------------------


def _no_smi(argv: list[str], **_: object) -> Completed:
    raise FileNotFoundError(argv[0])  # no nvidia-smi on this machine


def test_the_probe_recognises_a_jetson_by_its_l4t_release_file(tmp_path: Path) -> None:
    """L4T writes /etc/nv_tegra_release ("# R35 (release), REVISION: 3.1, ..."); the driver file
    then reports the L4T release, which must not be judged as a desktop driver."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 3.1, GCID: 32827747\n")
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  35.3.1  Release Build\n"
    )
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=_no_smi,
        platform=Platform.LINUX,
        environ={},
        fs_root=tmp_path,
        machine="aarch64",
    )
    assert hw.tegra and hw.machine == "aarch64"
    assert hw.driver_version == "35.3.1"
    assert driver_verdict(KN, "12.6", hw).level is DriverLevel.UNKNOWN


def test_a_desktop_is_not_a_jetson_and_its_machine_is_normalised(tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/compatible").write_text("raspberrypi,4-model-b\0brcm,bcm2711\0")
    hw = probe_hardware(
        nvml=fk.FakeNvml(fk.LIBRARY_NOT_FOUND_DRIVER),
        run=_no_smi,
        platform=Platform.LINUX,
        environ={},
        fs_root=tmp_path,
        machine="AMD64",
    )
    assert not hw.tegra and hw.machine == "x86_64"


def test_a_hardware_file_can_say_jetson_and_aarch64(tmp_path: Path) -> None:
    hw = hardware_from_json(
        {
            "driver_version": "36.4.3",
            "cuda_driver_version": "12.6",
            "machine": "aarch64",
            "tegra": True,
            "gpus": [],
        },
        where="hw.json",
    )
    assert hw.tegra and hw.machine == "aarch64"
    with pytest.raises(HardwareFileError, match="tegra"):
        hardware_from_json({"tegra": "yes"}, where="hw.json")
    with pytest.raises(HardwareFileError, match="machine"):
        hardware_from_json({"machine": "sparc"}, where="hw.json")


def test_check_offers_cu134_as_newer_on_linux_only() -> None:
    """cu134 is published for Linux only (test-infra #8497): no Windows advice may name it."""
    linux = diagnose(env(), reading("2.14.1+cu132"), hardware("620.10", "13.4", RTX_5090), KN)
    assert [f.code.value for f in linux] == ["newer-variant-available"] and "cu134" in linux[0].message
    windows_hw = hardware("620.10", "13.4", RTX_5090, platform=Platform.WINDOWS)
    assert diagnose(env(Platform.WINDOWS), reading("2.14.1+cu132"), windows_hw, KN) == ()


def test_plan_refuses_pre_cuda_13_wheels_on_a_jetson_and_says_why() -> None:
    hw = jetson("36.4.3", "12.6", ORIN)
    with pytest.raises(
        PlanRefusedError, match="cu126 is an aarch64 server build, which does not run on a Jetson"
    ):
        _plan_variant(hw, None, "2.9.0", machine="aarch64")


# --- the words about PTX (release wheels carry none, except 2.13.0's cu130/cu132) -------------


def test_an_uncovered_gpu_is_told_the_wheel_carries_no_ptx_for_it() -> None:
    (finding,) = diagnose(env(), reading("2.6.0+cu124"), hardware("572.16", "12.8", RTX_5090), KN)
    assert finding.code.value == "gpu-arch-unsupported"
    assert "carries no PTX" in finding.message and "no kernel image" in finding.message


@pytest.mark.parametrize(
    ("build", "jit"),
    [("2.13.0+cu132", "its PTX JIT, Triton and torch.compile"), ("2.12.1+cu132", "so torch runs through")],
)
def test_minor_compat_names_ptx_jit_only_for_a_wheel_that_has_ptx(build: str, jit: str) -> None:
    hw = hardware("580.82.07", "13.0", RTX_4090)
    (finding,) = diagnose(env(), reading(build), hw, KN)
    assert finding.code.value == "driver-minor-compat"
    assert jit in finding.message
    if "2.12" in build:
        assert "PTX JIT" not in finding.message and "Triton and torch.compile may fail" in finding.message
