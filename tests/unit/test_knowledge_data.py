"""Consistency of the shipped knowledge, and loading a user's override file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from torchdoctor.service.errors import KnowledgeError
from torchdoctor.service.facts.knowledge import Knowledge, builtin_raw, load_knowledge, release_minor
from torchdoctor.service.facts.variants import variant_cuda
from torchdoctor.service.models import ComputeCapability, Platform

NO_OVERRIDE = Path("/nonexistent/knowledge.json")


@pytest.fixture(scope="module")
def kn() -> Knowledge:
    return load_knowledge(NO_OVERRIDE)


PLATFORMS = (Platform.LINUX, Platform.WINDOWS)
# CUDA minors whose first (GA) driver number was not found: only the driver's own CUDA version can
# call them fully supported (see knowledge.json's source for 13.4).
NO_GA_DRIVER_KNOWN = {"13.4"}


def _cuda_variants(kn: Knowledge, platform: Platform | None = None) -> list[tuple[str, str]]:
    return [
        (rel.minor, v)
        for rel in kn.releases.values()
        for v in (rel.variants_for(platform) if platform else rel.variants)
        if v.startswith("cu")
    ]


def test_every_cuda_variant_has_a_driver_floor_on_each_os_it_is_published_for(kn: Knowledge) -> None:
    for platform in PLATFORMS:
        for minor, variant in _cuda_variants(kn, platform):
            cuda = variant_cuda(variant)
            assert cuda is not None
            floor = kn.driver_floor(cuda, platform)
            assert floor.mvc is not None, f"{minor} {variant} on {platform}: no minor-version floor"
            if cuda in NO_GA_DRIVER_KNOWN:
                assert floor.toolkit is None
                continue
            assert floor.toolkit is not None, f"{minor} {variant} on {platform}: no toolkit driver"
            assert floor.mvc <= floor.toolkit, f"{variant}: the MVC floor is above the toolkit driver"


def test_every_cuda_variant_of_every_release_has_an_arch_list_on_each_os(kn: Knowledge) -> None:
    for platform in PLATFORMS:
        for minor, variant in _cuda_variants(kn, platform):
            arch = kn.arch_list(f"{minor}.0", variant, platform)
            assert arch is not None, f"torch {minor} {variant} on {platform}: no arch list"
            assert not arch.inferred


def test_arch_lists_respect_what_each_toolkit_can_build(kn: Knowledge) -> None:
    """NVIDIA: CUDA 13 cannot build for Maxwell/Pascal/Volta; no toolkit builds for GPUs newer than it knows."""
    for minor, variant in _cuda_variants(kn):
        cuda = variant_cuda(variant)
        assert cuda is not None
        oldest, newest = kn.cuda_min_arch(cuda), kn.cuda_max_arch(cuda)
        assert oldest is not None and newest is not None, variant
        for platform in (Platform.LINUX, Platform.WINDOWS):
            arch = kn.arch_list(f"{minor}.0", variant, platform)
            assert arch is not None
            assert min(arch.codes) >= oldest, f"{minor} {variant}: {min(arch.codes)} below {oldest}"
            assert max(arch.codes) <= newest, f"{minor} {variant}: {max(arch.codes)} above {newest}"


def test_every_release_has_its_pairing_and_patch_pairs_agree_with_it(kn: Knowledge) -> None:
    for rel in kn.releases.values():
        if rel.torchvision is None:
            # No torchvision released for this line yet (2.15): the wheels' Requires-Dist decide.
            continue
        assert re.fullmatch(r"0\.\d+", rel.torchvision), rel.minor
        # torchvision's minor has been torch's minor + 15 for every 2.x release.
        assert int(rel.torchvision.split(".")[1]) == int(rel.minor.split(".")[1]) + 15, rel.minor
        assert rel.python, rel.minor
        if rel.pypi_linux is not None:
            assert rel.pypi_linux in rel.variants, rel.minor
    for torch_version, pair in kn.patch_pairs.items():
        paired = kn.release(torch_version)
        assert paired is not None, torch_version
        if "torchvision" in pair:
            assert release_minor(pair["torchvision"]) == paired.torchvision, torch_version
        if "torchaudio" in pair:
            assert release_minor(pair["torchaudio"]) == paired.torchaudio, torch_version


def test_torchaudio_is_frozen_at_the_stable_abi_release_from_2_12(kn: Knowledge) -> None:
    for rel in kn.releases.values():
        if tuple(map(int, rel.minor.split("."))) >= (2, 12):
            assert rel.torchaudio == str(kn.torchaudio_stable_abi_from), rel.minor
        else:
            assert rel.torchaudio == rel.minor


def test_every_entry_cites_a_known_source() -> None:
    raw: dict[str, Any] = builtin_raw()
    keys = set(raw["sources"])
    cited: list[str] = []
    for table in ("cuda_majors", "cuda", "releases"):
        cited += [entry["source"] for entry in raw[table].values()]
    cited += [entry["source"] for entry in raw["arch_lists"]]
    for source in cited:
        assert any(key in source for key in keys), f"unknown source: {source}"


@pytest.mark.parametrize(
    ("code", "device", "runs"),
    [
        ("8.0", "8.6", True),  # same major, newer minor
        ("8.6", "8.0", False),  # older minor cannot run newer code
        ("8.0", "8.7", False),  # Jetson Orin runs only its own code
        ("9.0", "12.0", False),  # SASS never crosses majors
        ("12.0", "12.1", True),  # GB10 runs sm_120
        ("10.0", "10.3", True),  # B300 runs sm_100
        ("10.0", "10.1", False),  # DEVICE_REQUIREMENT: 100 -> >=100 except 101
        ("10.1", "11.0", True),  # 101 -> {101, 110}
        ("6.0", "6.1", True),  # GTX 10xx runs Linux wheels' sm_60
        ("6.0", "6.2", False),  # Jetson TX2
    ],
)
def test_sass_compatibility_follows_pytorchs_device_requirement(
    kn: Knowledge, code: str, device: str, runs: bool
) -> None:
    assert kn.sass_runs_on(ComputeCapability.parse(code), ComputeCapability.parse(device)) is runs


def test_an_unknown_release_gets_its_variants_newest_list_marked_inferred(kn: Knowledge) -> None:
    arch = kn.arch_list("2.99.0+cu130", "cu130", Platform.LINUX)
    assert arch is not None and arch.inferred
    assert kn.arch_list("2.99.0+cu999", "cu999", Platform.LINUX) is None


def test_driver_versions_keep_nvidias_spelling(kn: Knowledge) -> None:
    floor = kn.driver_floor("13.0", Platform.LINUX)
    assert str(floor.toolkit) == "580.65.06"
    # Windows has no CUDA 13 toolkit driver: the major's floor stands in.
    assert str(kn.driver_floor("13.0", Platform.WINDOWS).toolkit) == "580"


def test_a_user_override_adds_a_release_and_takes_precedence(tmp_path: Path) -> None:
    override = tmp_path / "knowledge.json"
    override.write_text(
        json.dumps(
            {
                "releases": {
                    "2.16": {
                        "variants": ["cpu", "cu130", "cu135"],
                        "python": ["3.11"],
                        "pypi_linux": "cu130",
                        "torchvision": "0.30",
                        "torchaudio": "2.11",
                        "source": "my own test",
                    }
                },
                "cuda": {
                    "13.5": {
                        "toolkit_driver": {"linux": "610.43.02", "windows": None},
                        "max_arch": "12.1",
                        "source": "x",
                    }
                },
                "arch_lists": [
                    {
                        "variant": "cu135",
                        "torch": ">=2.16",
                        "os": "any",
                        "arch": ["8.0", "12.0"],
                        "ptx": None,
                        "source": "x",
                    }
                ],
            }
        )
    )
    kn = load_knowledge(override)
    assert kn.release("2.16.0") is not None
    arch = kn.arch_list("2.16.0", "cu135", Platform.LINUX)
    assert arch is not None and not arch.inferred
    assert kn.release("2.7.1") is not None  # the built-in data is still there


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (
            '{"cuda": {"12.8": {"toolkit_driver": {"linux": "abc"}, "max_arch": "12.0", "source": "x"}}}',
            "cuda.12.8.linux",
        ),
        (
            '{"arch_lists": [{"variant": "cu128", "torch": "2.8", "os": "linux", "arch": ["8.0"], "source": "x"}]}',
            "arch_lists[0].torch",
        ),
        (
            '{"arch_lists": [{"variant": "cu128", "torch": ">=2.8", "os": "beos", "arch": ["8.0"], "source": "x"}]}',
            "arch_lists[0].os",
        ),
        ('{"releases": {"2.15": {"variants": "cu130"}}}', "releases.2.15.variants"),
    ],
)
def test_a_malformed_override_names_the_entry_at_fault(tmp_path: Path, content: str, fragment: str) -> None:
    override = tmp_path / "knowledge.json"
    override.write_text(content)
    with pytest.raises(KnowledgeError) as info:
        load_knowledge(override)
    assert fragment in str(info.value)
    assert str(override) in str(info.value)
