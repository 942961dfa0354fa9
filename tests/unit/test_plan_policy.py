"""Table tests of the plan policy over a published index modelled on the real one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.version import Version

from tests.support.hw import GTX_1080, RTX_4090, RTX_5090, TESLA_P100, hardware, no_gpu, reading
from torchdoctor.service.envs.builds import BuildReading
from torchdoctor.service.facts.knowledge import Knowledge, load_knowledge
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.policy import (
    Choice,
    PlanRefusedError,
    Published,
    build_plan,
    candidate_variants,
    choose_companions,
    choose_torch,
)
from torchdoctor.service.models import Hardware, Installer, Platform, ProbeState

KN = load_knowledge(Path("/nonexistent"))
CP312 = [
    Tag("cp312", "cp312", "manylinux_2_28_x86_64"),
    Tag("cp312", "cp312", "linux_x86_64"),
    Tag("py3", "none", "any"),
]
RELEASES = {  # what download.pytorch.org publishes (patch releases as in the knowledge's pairs)
    "2.5.1": "2.5",
    "2.6.0": "2.6",
    "2.7.1": "2.7",
    "2.8.0": "2.8",
    "2.9.1": "2.9",
    "2.10.0": "2.10",
    "2.11.0": "2.11",
    "2.12.1": "2.12",
    "2.13.0": "2.13",
}


def _file(project: str, version: str, tag: str = "cp312-cp312-manylinux_2_28_x86_64") -> IndexFile:
    interpreter, abi, platform = tag.split("-")
    return IndexFile(
        project=project,
        filename=f"{project}-{version}-{tag}.whl",
        url=f"https://download.pytorch.org/whl/{project}-{version}-{tag}.whl",
        version=Version(version),
        tags=frozenset({Tag(interpreter, abi, platform)}),
        sha256="0" * 64,
        requires_python=">=3.9",
        yanked=False,
        size=1000,
    )


def published(kn: Knowledge = KN, *, only: set[str] | None = None) -> Published:
    files: dict[str, dict[str, list[IndexFile]]] = {}
    for version, minor in RELEASES.items():
        rel = kn.releases[minor]
        for variant in rel.variants:
            if only is not None and variant not in only:
                continue
            if not (variant.startswith("cu") or variant == "cpu"):
                continue
            per = files.setdefault(variant, {})
            per.setdefault("torch", []).append(_file("torch", f"{version}+{variant}"))
            tv = kn.paired_patch(version, "torchvision") or f"{rel.torchvision}.0"
            per.setdefault("torchvision", []).append(_file("torchvision", f"{tv}+{variant}"))
            ta = kn.paired_patch(version, "torchaudio") or f"{rel.torchaudio}.0"
            per.setdefault("torchaudio", []).append(_file("torchaudio", f"{ta}+{variant}", "py3-none-any"))
    return Published({v: {p: tuple(fs) for p, fs in per.items()} for v, per in files.items()})


def choose(hw: Hardware, installed: BuildReading | None, pub: Published | None = None) -> Choice:
    return choose_torch(
        installed=installed, hardware=hw, knowledge=KN, published=pub or published(), tags=CP312
    )


POLICY = [
    # (name, hardware, installed, expected torch version)
    (
        "Blackwell on cu124 -> newest release whose variant covers sm_120 and the 572 driver",
        hardware("572.16", "12.8", RTX_5090),
        reading("2.5.1+cu124"),
        "2.11.0+cu128",
    ),
    (
        "Blackwell with a 580 driver -> newest release, cu130",
        hardware("580.95.05", "13.0", RTX_5090),
        reading("2.5.1+cu124"),
        "2.13.0+cu130",
    ),
    (
        "Pascal on cu128 -> cu126 of the same release",
        hardware("572.16", "12.8", GTX_1080),
        reading("2.8.0+cu128"),
        "2.8.0+cu126",
    ),
    (
        "P100 on cu130 -> cu126 of the same release",
        hardware("580.95.05", "13.0", TESLA_P100),
        reading("2.9.1+cu130"),
        "2.9.1+cu126",
    ),
    (
        "a CPU build on an RTX -> CUDA, same release",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cpu"),
        "2.7.1+cu128",
    ),
    (
        "a 12.2 driver -> a CUDA 12 build through minor-version compatibility",
        hardware("535.104.05", "12.2", RTX_4090),
        reading("2.9.1+cu130"),
        "2.9.1+cu128",
    ),
    (
        "a 12.2 driver prefers a build that fits fully when one exists",
        hardware("535.104.05", "12.2", RTX_4090),
        reading("2.6.0+cu126"),
        "2.6.0+cu118",
    ),
    ("no GPU -> cpu, same release", no_gpu(), reading("2.7.1+cu128"), "2.7.1+cpu"),
    (
        "no torch yet -> the newest release with a fitting build (cu126's sm_86 runs on the 4090)",
        hardware("572.16", "12.8", RTX_4090),
        None,
        "2.13.0+cu126",
    ),
    (
        "a build that fits fully stays, even with a newer one published (check only informs)",
        hardware("572.16", "12.8", RTX_4090),
        reading("2.7.1+cu118"),
        "2.7.1+cu118",
    ),
    (
        "a minor-compat build stays when no build of its release fits the driver fully",
        hardware("535.104.05", "12.2", RTX_4090),
        reading("2.9.1+cu126"),
        "2.9.1+cu126",
    ),
    (
        "Windows 4090 with a 566 driver -> cu126 fits fully",
        hardware("566.36", "12.7", RTX_4090, platform=Platform.WINDOWS),
        reading("2.7.1+cpu"),
        "2.7.1+cu126",
    ),
]


@pytest.mark.parametrize(("name", "hw", "installed", "expected"), POLICY, ids=[p[0] for p in POLICY])
def test_policy(name: str, hw: Hardware, installed: BuildReading | None, expected: str) -> None:
    choice = choose(hw, installed)
    assert str(choice.file.version) == expected
    assert choice.reason.endswith(".")


def test_nothing_fits_is_refused_with_the_reason_and_the_cpu_choice_named() -> None:
    # An RTX 5090 on a 535 driver: sm_120 needs CUDA 12.8+, which the driver only runs through
    # minor-version compatibility... but with only cu126 published nothing covers sm_120.
    with pytest.raises(PlanRefusedError) as info:
        choose(
            hardware("535.104.05", "12.2", RTX_5090), reading("2.7.1+cu126"), published(only={"cpu", "cu126"})
        )
    assert "RTX 5090" in str(info.value)
    assert "cu126 has no code" in str(info.value)
    assert info.value.hint is not None and "whl/cpu" in info.value.hint


def test_cpu_is_never_chosen_silently_for_a_gpu_machine() -> None:
    with pytest.raises(PlanRefusedError):
        choose(hardware("572.16", "12.8", RTX_5090), reading("2.7.1+cpu"), published(only={"cpu"}))


@pytest.mark.parametrize("state", [ProbeState.RESTART_NEEDED, ProbeState.NO_DRIVER, ProbeState.PARTIAL])
def test_a_driver_that_did_not_list_its_gpus_refuses_instead_of_planning_cpu(state: ProbeState) -> None:
    """A driver answered (PARTIAL: version known, GPUs not listed): "no GPU" would be a guess."""
    hw = hardware("572.16", None, state=state)
    with pytest.raises(PlanRefusedError, match="without listing its GPUs"):
        choose(hw, reading("2.7.1+cu128"))


def test_an_unknown_driver_version_refuses_instead_of_assuming_any_driver() -> None:
    with pytest.raises(PlanRefusedError, match="driver's version is not known"):
        choose(hardware(None, None, RTX_4090), None)


def test_companions_come_paired_and_from_the_same_variant() -> None:
    hw = hardware("572.16", "12.8", GTX_1080)
    installed = reading("2.8.0+cu128", torchvision="0.23.0+cu128", torchaudio="2.8.0+cu128")
    pub = published()
    choice = choose(hw, installed, pub)
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP312
    )
    assert [str(f.version) for f in companions] == ["0.23.0+cu126", "2.8.0+cu126"]
    assert notes == ()


def test_only_companions_the_environment_has_are_planned() -> None:
    hw = hardware("572.16", "12.8", RTX_4090)
    installed = reading("2.7.1+cpu", torchvision="0.22.1+cpu")
    pub = published()
    choice = choose(hw, installed, pub)
    companions, _ = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP312
    )
    assert [f.project for f in companions] == ["torchvision"]
    assert str(companions[0].version) == "0.22.1+cu128"


def test_a_companion_the_variant_lacks_is_said_not_guessed() -> None:
    hw = hardware("572.16", "12.8", RTX_4090)
    installed = reading("2.7.1+cpu", torchaudio="2.7.1+cpu")
    pub = published()
    trimmed = Published(
        {v: {p: fs for p, fs in per.items() if p != "torchaudio"} for v, per in pub.files.items()}
    )
    choice = choose(hw, installed, trimmed)
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=trimmed, tags=CP312
    )
    assert companions == ()
    assert notes and "torchaudio is not published for cu128" in notes[0]


def test_torchaudio_with_the_stable_abi_pairs_with_later_torch() -> None:
    hw = hardware("580.95.05", "13.0", RTX_4090)
    installed = reading("2.13.0+cpu", torchaudio="2.11.0+cpu")
    pub = published()
    choice = choose(hw, installed, pub)
    companions, _ = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP312
    )
    assert [str(f.version) for f in companions] == ["2.11.0+cu130"]


def test_versions_compare_as_versions_not_strings() -> None:
    """light-the-torch ranked "2.9.1" above "2.14.1"; we must not."""
    pub = Published({"cu130": {"torch": (_file("torch", "2.9.1+cu130"), _file("torch", "2.14.1+cu130"))}})
    choice = choose(hardware("580.95.05", "13.0", RTX_4090), None, pub)
    assert str(choice.file.version) == "2.14.1+cu130"


def test_prereleases_are_not_chosen() -> None:
    pub = Published({"cu130": {"torch": (_file("torch", "2.13.0+cu130"), _file("torch", "2.14.0rc1+cu130"))}})
    choice = choose(hardware("580.95.05", "13.0", RTX_4090), None, pub)
    assert str(choice.file.version) == "2.13.0+cu130"


def test_candidate_variants_skip_those_the_driver_cannot_run() -> None:
    variants = candidate_variants(KN, hardware("535.104.05", "12.2", RTX_4090))
    assert "cu130" not in variants and "cu132" not in variants
    assert variants[0] == "cu129"
    assert "cu118" in variants


def test_an_unknown_release_pairs_torchvision_by_the_rule_and_says_so() -> None:
    pub = Published(
        {
            "cu130": {
                "torch": (_file("torch", "2.99.0+cu130"),),
                "torchvision": (_file("torchvision", "0.114.0+cu130"), _file("torchvision", "0.29.1+cu130")),
            }
        }
    )
    installed = reading("2.13.0+cu130", torchvision="0.28.0+cu130")
    choice = choose(hardware("580.95.05", "13.0", RTX_4090), None, pub)
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP312
    )
    assert [str(f.version) for f in companions] == ["0.114.0+cu130"]
    assert any("by a guess" in n for n in notes)


def _plan_for(installed: BuildReading, hw: Hardware) -> tuple[bool, tuple[str, ...]]:
    pub = published()
    choice = choose(hw, installed, pub)
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP312
    )
    plan = build_plan(
        environment=Path("/env"),
        choice=choice,
        companions=companions,
        notes=notes,
        index_base="https://download.pytorch.org/whl",
        installed=installed,
    )
    return plan.changes_nothing, plan.notes


def test_a_kept_build_changes_nothing_and_says_why() -> None:
    hw = hardware("535.104.05", "12.2", RTX_4090)
    choice = choose(hw, reading("2.9.1+cu126"))
    assert "as the cu126 build it has" in choice.reason
    assert "no other build of it fits this driver fully" in choice.reason
    assert _plan_for(reading("2.9.1+cu126"), hw) == (True, ())


def test_a_damaged_torch_is_reinstalled_even_at_the_same_version() -> None:
    hw = hardware("572.16", "12.8", RTX_4090)
    changes_nothing, _ = _plan_for(reading("2.7.1+cu128", problems=("torch/version.py is missing",)), hw)
    assert changes_nothing is False


def test_a_conda_torch_plan_says_up_front_that_fix_needs_consent() -> None:
    conda = reading("2.7.1", variant="cpu")
    conda = dataclasses.replace(conda, build=dataclasses.replace(conda.build, installer=Installer.CONDA))
    changes_nothing, notes = _plan_for(conda, hardware("572.16", "12.8", RTX_4090))
    assert changes_nothing is False
    assert notes[0].startswith("torch 2.7.1 here was installed by conda")
    assert "--allow-conda-mix" in notes[0]
