"""Table tests of every rule: each row is a machine, a build and the findings a person should see."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from tests.support.hw import (
    GTX_780,
    GTX_970,
    GTX_1080,
    H100,
    K80,
    RTX_3090,
    RTX_4090,
    RTX_5090,
    TESLA_P100,
    V100,
    env,
    hardware,
    no_gpu,
    reading,
)
from torchdoctor.service.envs.builds import BuildReading
from torchdoctor.service.facts.knowledge import Knowledge, load_knowledge
from torchdoctor.service.models import Hardware, Installer, Platform, ProbeState, PythonEnv
from torchdoctor.service.rules.diagnose import diagnose

E = "error"
W = "warn"
I = "info"  # noqa: E741 - reads as the severity letter in the table below


@pytest.fixture(scope="module")
def kn() -> Knowledge:
    return load_knowledge(Path("/nonexistent"))


CASES: list[tuple[str, Hardware, BuildReading, list[str]]] = [
    # --- healthy builds stay silent -----------------------------------------------------------
    ("4090 on 2.7.1 cu128, new driver", hardware("572.16", "12.8", RTX_4090), reading("2.7.1+cu128"), []),
    ("5090 on 2.8.0 cu128", hardware("572.16", "12.8", RTX_5090), reading("2.8.0+cu128"), []),
    ("cpu build, no GPU", no_gpu(), reading("2.5.1+cpu"), []),
    ("P100 on cu126", hardware("560.35.05", "12.6", TESLA_P100), reading("2.6.0+cu126"), []),
    ("GTX 970 (5.2) runs sm_50 code", hardware("560.35.05", "12.6", GTX_970), reading("2.7.1+cu126"), []),
    ("V100 on 2.8 cu128 (sm_70 re-added)", hardware("572.16", "12.8", V100), reading("2.8.0+cu128"), []),
    ("H100 on 2.13 cu130", hardware("580.95.05", "13.0", H100), reading("2.13.0+cu130"), []),
    (
        "unknown future release on a known variant",
        hardware("580.95.05", "13.0", RTX_5090),
        reading("2.99.0+cu130"),
        [],
    ),
    ("unknown future variant", hardware("610.43.02", "13.4", RTX_5090), reading("2.99.0+cu134"), []),
    ("driver unknown: no driver alarm", hardware(None, None, RTX_4090), reading("2.7.1+cu128"), []),
    # --- cpu-build-with-gpu -------------------------------------------------------------------
    (
        "cpu build on an RTX 4090",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.5.1+cpu"),
        ["cpu-build-with-gpu"],
    ),
    (
        "ROCm build on an NVIDIA machine",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.6.0+rocm6.2.4", cuda=None),
        ["cpu-build-with-gpu"],
    ),
    (
        "cpu build on a GTX 780 that no wheel supports",
        hardware("470.82.01", "11.4", GTX_780),
        reading("2.5.1+cpu"),
        [],
    ),
    # --- driver-too-old / driver-minor-compat -------------------------------------------------
    (
        "cu130 on a 535 driver",
        hardware("535.104.05", "12.2", RTX_4090),
        reading("2.9.1+cu130"),
        ["driver-too-old"],
    ),
    (
        "cu128 on a 470 driver",
        hardware("470.82.01", "11.4", RTX_3090),
        reading("2.7.1+cu128"),
        ["driver-too-old"],
    ),
    (
        "cu130 judged from the driver's CUDA version only",
        hardware(None, "12.8", RTX_4090),
        reading("2.9.1+cu130"),
        ["driver-too-old"],
    ),
    (
        "cu128 on 550: minor-version compatibility",
        hardware("550.54.14", "12.4", RTX_4090),
        reading("2.7.1+cu128"),
        ["driver-minor-compat"],
    ),
    (
        "cu128 on a Windows 551.61 driver",
        hardware("551.61", "12.4", RTX_4090, platform=Platform.WINDOWS),
        reading("2.7.1+cu128"),
        ["driver-minor-compat"],
    ),
    (
        "cu126 on 528.33 on Windows",
        hardware("528.33", "12.0", RTX_3090, platform=Platform.WINDOWS),
        reading("2.6.0+cu126"),
        ["driver-minor-compat"],
    ),
    (
        "cu126 on 527 on Windows is below the 12.x floor",
        hardware("527.41", "12.0", RTX_3090, platform=Platform.WINDOWS),
        reading("2.6.0+cu126"),
        ["driver-too-old"],
    ),
    # --- gpu-arch-unsupported -----------------------------------------------------------------
    (
        "RTX 5090 on cu124",
        hardware("572.16", "12.8", RTX_5090),
        reading("2.5.1+cu124"),
        ["gpu-arch-unsupported"],
    ),
    (
        "RTX 5090 on cu126",
        hardware("572.16", "12.8", RTX_5090),
        reading("2.7.1+cu126"),
        ["gpu-arch-unsupported"],
    ),
    (
        "GTX 1080 on cu128",
        hardware("572.16", "12.8", GTX_1080),
        reading("2.8.0+cu128"),
        ["gpu-arch-unsupported"],
    ),
    (
        "P100 on cu130",
        hardware("580.95.05", "13.0", TESLA_P100),
        reading("2.9.1+cu130"),
        ["gpu-arch-unsupported"],
    ),
    (
        "V100 on 2.7 cu128 (no sm_70 then)",
        hardware("572.16", "12.8", V100),
        reading("2.7.1+cu128"),
        ["gpu-arch-unsupported"],
    ),
    (
        "Kepler K80 on cu126",
        hardware("470.82.01", "11.4", K80),
        reading("2.6.0+cu126"),
        ["driver-too-old", "gpu-arch-unsupported"],
    ),
    (
        "multi-GPU: 4090 fine, 1080 not",
        hardware("572.16", "12.8", RTX_4090, GTX_1080),
        reading("2.8.0+cu128"),
        ["gpu-arch-unsupported"],
    ),
    (
        "unknown release, variant whose toolkit cannot reach the GPU",
        hardware("580.95.05", "13.0", RTX_5090),
        reading("2.99.0+cu126"),
        ["gpu-arch-unsupported"],
    ),
    (
        "unknown release of CUDA 13 on Pascal",
        hardware("580.95.05", "13.0", GTX_1080),
        reading("2.99.0+cu130"),
        ["gpu-arch-unsupported"],
    ),
    (
        "Windows cu118's compute_37 PTX does not rescue an RTX 5090",
        hardware("572.16", "12.8", RTX_5090, platform=Platform.WINDOWS),
        reading("2.6.0+cu118"),
        ["gpu-arch-unsupported"],
    ),
    # --- cuda-build-without-gpu ---------------------------------------------------------------
    ("cu128 on a machine without NVIDIA", no_gpu(), reading("2.7.1+cu128"), ["cuda-build-without-gpu"]),
    (
        "restart needed: GPU presence unknown, stay silent",
        hardware(None, None, state=ProbeState.RESTART_NEEDED),
        reading("2.7.1+cu128"),
        [],
    ),
    # --- companions ---------------------------------------------------------------------------
    (
        "torchvision from another release",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.4.0+cu121", torchvision="0.20.1+cu121"),
        ["companion-mismatch"],
    ),
    (
        "torchvision pinned to another patch",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.13.1+cu130", torchvision="0.28.0+cu130", torchvision_requires="==2.13.0"),
        ["driver-too-old", "companion-mismatch"],
    ),
    (
        "paired torchvision and torchaudio",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu128", torchvision="0.22.1+cu128", torchaudio="2.7.1+cu128"),
        [],
    ),
    (
        "torchaudio 2.11 with torch 2.13 (stable ABI)",
        hardware("580.95.05", "13.0", RTX_4090),
        reading("2.13.0+cu130", torchaudio="2.11.0+cu130", torchaudio_requires=">=2.11"),
        [],
    ),
    (
        "torchaudio 2.10 with torch 2.13",
        hardware("580.95.05", "13.0", RTX_4090),
        reading("2.13.0+cu130", torchaudio="2.10.0+cu130"),
        ["companion-mismatch"],
    ),
    (
        "torchaudio 2.6 with torch 2.7",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu128", torchaudio="2.6.0+cu128"),
        ["companion-mismatch"],
    ),
    (
        "unknown release: torchvision judged by its own requirement",
        hardware("580.95.05", "13.0", RTX_4090),
        reading("2.99.0+cu130", torchvision="0.30.0+cu130", torchvision_requires="==2.99.0"),
        [],
    ),
    (
        "unknown release: unmet torchvision requirement",
        hardware("580.95.05", "13.0", RTX_4090),
        reading("2.99.0+cu130", torchvision="0.29.1+cu130", torchvision_requires="==2.14.1"),
        ["companion-mismatch"],
    ),
    (
        "cpu torchvision beside cu128 torch",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu128", torchvision="0.22.1+cpu"),
        ["variant-mismatch"],
    ),
    (
        "torchaudio 2.11 cu128 beside cu130 torch: same CUDA major is fine",
        hardware("580.95.05", "13.0", RTX_4090),
        reading("2.11.0+cu130", torchaudio="2.11.0+cu128"),
        ["variant-mismatch"],
    ),
    (
        "torchaudio 2.11 cu132 beside cu130 torch",
        hardware("595.58.03", "13.2", RTX_4090),
        reading("2.12.1+cu130", torchaudio="2.11.0+cu132"),
        ["newer-variant-available"],
    ),
    # --- torch-unreadable ---------------------------------------------------------------------
    (
        "half-installed torch",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu128", problems=("torch/version.py is missing",)),
        ["torch-unreadable"],
    ),
    # --- newer-variant-available --------------------------------------------------------------
    (
        "cu118 works but cu128 fits fully",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu118"),
        ["newer-variant-available"],
    ),
    (
        "cu128 on an RTX 5090 with a 560 driver: no build fits better, so only info",
        hardware("560.35.05", "12.6", RTX_5090),
        reading("2.7.1+cu128"),
        ["driver-minor-compat"],
    ),
    (
        # A driver reporting CUDA 12.6 supports 12.6 fully (560.94 is a 12.6 Update 1 driver;
        # NVIDIA Table 3 lists what each update ships, the 12.6 GA driver is 560.76).
        "cu126 on 2.7 with a 560.94 driver: fits fully; cu128 would be minor-compat only, no info",
        hardware("560.94", "12.6", RTX_4090, platform=Platform.WINDOWS),
        reading("2.7.1+cu126"),
        [],
    ),
]


@pytest.mark.parametrize(("name", "hw", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rules(kn: Knowledge, name: str, hw: Hardware, build: BuildReading, expected: list[str]) -> None:
    findings = diagnose(env(hw.platform), build, hw, kn)
    assert sorted(f.code.value for f in findings) == sorted(expected)
    for finding in findings:
        assert finding.message.endswith("."), finding.message
        assert "\n" not in finding.message
        assert finding.fix


def test_findings_come_most_severe_first(kn: Knowledge) -> None:
    hw = hardware("572.16", "12.8", RTX_4090)
    findings = diagnose(
        env(), reading("2.7.1+cu128", torchvision="0.22.1+cpu", torchaudio="2.6.0+cu128"), hw, kn
    )
    severities = [f.severity.value for f in findings]
    assert severities == sorted(severities, key=["error", "warn", "info"].index)


def test_fix_names_the_exact_pip_command_when_the_release_has_a_fitting_build(kn: Knowledge) -> None:
    hw = hardware("572.16", "12.8", GTX_1080)
    (finding,) = diagnose(env(), reading("2.8.0+cu128", torchvision="0.23.0+cu128"), hw, kn)
    assert "torchdoctor fix --env /home/ana/proj/.venv" in finding.fix
    wanted = "pip install torch==2.8.0+cu126 torchvision==0.23.0+cu126 --index-url https://download.pytorch.org/whl/cu126"
    assert wanted in finding.fix
    assert "--force-reinstall" not in finding.fix  # it would reinstall every nvidia-* dependency too


def test_fix_moves_to_a_newer_release_when_none_of_this_one_fits(kn: Knowledge) -> None:
    hw = hardware("572.16", "12.8", RTX_5090)
    (finding,) = diagnose(env(), reading("2.5.1+cu124"), hw, kn)
    # Driver 572 cannot run CUDA 13, so the newest release with a fitting CUDA 12.8 build.
    assert "it moves to torch 2.11.0 cu128" in finding.fix
    assert "torch==2.11.0+cu128 --index-url https://download.pytorch.org/whl/cu128" in finding.fix


def test_windows_paths_are_quoted_for_cmd(kn: Knowledge) -> None:
    hw = hardware("572.16", "12.8", RTX_4090, platform=Platform.WINDOWS)
    (finding,) = diagnose(env(Platform.WINDOWS), reading("2.5.1+cpu"), hw, kn)
    assert "C:\\Users\\ana\\proj\\.venv\\Scripts\\python.exe -m pip" in finding.fix.replace("/", "\\")


def test_no_torch_no_findings(kn: Knowledge) -> None:
    assert diagnose(env(), None, hardware("572.16", "12.8", RTX_4090), kn) == ()


def test_a_driver_that_did_not_list_gpus_raises_no_gpu_alarms(kn: Knowledge) -> None:
    """PARTIAL with no GPUs (e.g. only /sys/module/nvidia/version answered) is not "no GPU"."""
    hw = hardware("572.16", None, state=ProbeState.PARTIAL)
    assert diagnose(env(), reading("2.7.1+cu128"), hw, kn) == ()
    assert diagnose(env(), reading("2.7.1+cpu"), hw, kn) == ()


def test_arch_lists_follow_the_environments_os_not_the_hardware_files(kn: Knowledge) -> None:
    """Windows cu128 wheels lack sm_70 (Linux 2.8 has it): a V100 is judged by the wheel's OS."""
    hw = hardware("572.16", "12.8", V100)  # a Linux-platform hardware file...
    win = diagnose(env(Platform.WINDOWS), reading("2.8.0+cu128"), hw, kn)  # ...a Windows venv
    assert [f.code.value for f in win] == ["gpu-arch-unsupported"]
    assert diagnose(env(Platform.LINUX), reading("2.8.0+cu128"), hw, kn) == ()


def test_a_companion_with_an_unparseable_version_is_not_judged(kn: Knowledge) -> None:
    hw = hardware("572.16", "12.8", RTX_4090)
    assert diagnose(env(), reading("2.7.1+cu128", torchvision="nonsense"), hw, kn) == ()


# --- one verdict: what check says matches what plan and fix do -------------------------------------


def test_minor_compat_is_a_warning_only_when_a_build_fits_better(kn: Knowledge) -> None:
    (better,) = diagnose(env(), reading("2.7.1+cu128"), hardware("550.54.14", "12.4", RTX_4090), kn)
    assert better.severity.value == W
    assert "install the cu118 build, which fits this driver fully" in better.fix
    assert "torch==2.7.1+cu118 --index-url https://download.pytorch.org/whl/cu118" in better.fix

    (none,) = diagnose(env(), reading("2.7.1+cu128"), hardware("560.35.05", "12.6", RTX_5090), kn)
    assert none.code.value == "driver-minor-compat" and none.severity.value == I
    assert none.fix == (
        "nothing to do now: no build of torch 2.7.1 fits this driver fully; a driver update to "
        "570.26 or newer would let cu128 run without compatibility mode"
    )


def test_a_conda_torch_is_told_that_fix_needs_consent_and_gets_no_pip_command(kn: Knowledge) -> None:
    conda = reading("2.7.1", variant="cpu", torchvision="0.22.1")
    conda = dataclasses.replace(conda, build=dataclasses.replace(conda.build, installer=Installer.CONDA))
    (finding,) = diagnose(env(), conda, hardware("572.16", "12.8", RTX_4090), kn)
    assert "torchdoctor fix --env /home/ana/proj/.venv --allow-conda-mix" in finding.fix
    assert "conda itself" in finding.fix
    assert "pip install" not in finding.fix


def test_hand_commands_name_the_index_check_was_given(kn: Knowledge) -> None:
    (finding,) = diagnose(
        env(),
        reading("2.7.1+cpu"),
        hardware("572.16", "12.8", RTX_4090),
        kn,
        index_base="http://127.0.0.1:9/",
    )
    assert finding.fix.endswith("torch==2.7.1+cu128 --index-url http://127.0.0.1:9/cu128")


def test_an_environment_without_pip_is_told_uv_and_a_path_with_a_space_is_quoted(kn: Knowledge) -> None:
    root = Path("/home/ana/my proj/.venv")
    bare = PythonEnv(root, root / "bin/python", "3.12.4", env().kind, False, (), Platform.LINUX)
    (finding,) = diagnose(bare, reading("2.7.1+cpu"), hardware("572.16", "12.8", RTX_4090), kn)
    assert "torchdoctor fix --env '/home/ana/my proj/.venv'" in finding.fix
    assert "uv pip install --python '/home/ana/my proj/.venv/bin/python' torch==2.7.1+cu128" in finding.fix


def test_a_damaged_torch_is_reinstalled_exactly_not_from_pypi(kn: Knowledge) -> None:
    broken = reading("2.7.1+cu128", problems=("torch/version.py is missing",))
    (finding,) = diagnose(env(), broken, hardware("572.16", "12.8", RTX_4090), kn)
    assert finding.fix.endswith(
        "pip install --force-reinstall --no-deps torch==2.7.1+cu128 --index-url https://download.pytorch.org/whl/cu128"
    )


def test_nothing_known_fits_points_at_plan_with_the_real_path(kn: Knowledge) -> None:
    (finding,) = diagnose(env(), reading("2.99.0+cu126"), hardware("580.95.05", "13.0", RTX_5090), kn)
    assert "torchdoctor plan --env /home/ana/proj/.venv" in finding.fix
    assert "PATH" not in finding.fix


_HAND = re.compile(r"by hand: (.+?)(?:$|;)")


@pytest.mark.parametrize(("name", "hw", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_hand_command_pins_every_package_and_its_index(
    kn: Knowledge, name: str, hw: Hardware, build: BuildReading, expected: list[str]
) -> None:
    for finding in diagnose(env(hw.platform), build, hw, kn):
        assert "PATH" not in finding.fix
        match = _HAND.search(finding.fix)
        if match is None:
            continue
        argv = shlex.split(match.group(1).replace("\\", "/"))
        url = argv[argv.index("--index-url") + 1]
        variant = url.rsplit("/", 1)[1]
        pins = [a for a in argv if a.startswith(("torch", "torchvision", "torchaudio"))]
        assert pins and pins[0].startswith("torch==")
        assert all(re.fullmatch(rf"\w+==[\d.]+\+{re.escape(variant)}", p) for p in pins), pins
        # It changes something: the installed torch and companions are not all already these.
        have = {f"torch=={build.build.version}"}
        for comp in ("torchvision", "torchaudio"):
            info = getattr(build, comp)
            if info is not None:
                have.add(f"{comp}=={info.version}")
        assert "--force-reinstall" in argv or not set(pins) <= have, finding.fix


def test_arch_lists_follow_the_installed_wheels_machine_not_the_hosts(kn: Knowledge) -> None:
    """aarch64 cu126 wheels are built for 8.0;9.0 only (.ci/manywheel/build_env_setup.py,
    TORCH_CUDA_ARCH_LIST_TABLE), x86_64 ones down to 5.0: a T4 (sm_75) is judged by the wheel's
    machine (its WHEEL tags), whatever the hardware file says of the host's."""
    hw = hardware("570.86.15", "12.8", ("Tesla T4", "7.5"))
    arm = dataclasses.replace(reading("2.9.0+cu126"), machine="aarch64")
    assert "gpu-arch-unsupported" in [f.code.value for f in diagnose(env(Platform.LINUX), arm, hw, kn)]
    x86 = dataclasses.replace(reading("2.9.0+cu126"), machine="x86_64")
    assert "gpu-arch-unsupported" not in [f.code.value for f in diagnose(env(Platform.LINUX), x86, hw, kn)]
