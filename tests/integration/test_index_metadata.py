"""Reading what wheels declare, from the real local index: PEP 658 `.metadata` files, HTTP range
requests on the wheel, the cache, and the companions a plan pairs from it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from tests.support.hw import RTX_4090, hardware, reading
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.install.index import IndexClient, IndexFile
from torchdoctor.service.install.metadata import MetadataReader, parse_metadata
from torchdoctor.service.install.plan import Target, make_plan
from torchdoctor.service.install.policy import Published, choose_companions, choose_torch
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

KN = load_knowledge(Path("/nonexistent"))
# Real wheels pip finds on this machine (PIP_FIND_LINKS folders); tests that need one skip without.
WHEEL_FOLDERS = (Path("/opt/pypi-more/files"), Path("/opt/wheels"), Path("/opt/pypi/files"))


def real_wheel(pattern: str) -> Path | None:
    for folder in WHEEL_FOLDERS:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def client(server: IndexServer, tmp_path: Path) -> IndexClient:
    return IndexClient(server.url, cache_dir=tmp_path / "pages", retries=0)


def served(server: IndexServer) -> list[str]:
    return [r.served for r in server.requests if r.path.endswith((".whl", ".metadata"))]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    publish(
        tmp_path / "root",
        [
            StandIn("torchvision", "0.28.0+cu130", requires=["torch==2.13.0"]),
            StandIn("torchvision", "0.29.1+cu130", requires=["torch>=2.14.0", "numpy"]),
        ],
        "cu130",
    )
    publish(
        tmp_path / "root",
        [
            StandIn(
                "torch", "2.99.0+cu130", cuda="13.0", requires=["cuda-toolkit[cudart]==13.0.3", "filelock"]
            )
        ],
        "cu130",
    )
    server = IndexServer(tmp_path / "root").start()
    yield server
    server.stop()


def test_pep_658_metadata_is_read_without_touching_the_wheel(index: IndexServer, tmp_path: Path) -> None:
    c = client(index, tmp_path)
    files = {str(f.version): f for f in c.list_files("cu130", "torchvision")}
    assert files["0.29.1+cu130"].has_metadata
    meta = MetadataReader(c).read(files["0.29.1+cu130"])
    assert meta is not None and meta.requirement_on("torch") == SpecifierSet(">=2.14.0")
    assert served(index) == ["metadata"]


def test_without_pep_658_the_wheel_is_read_by_ranges_never_whole(index: IndexServer, tmp_path: Path) -> None:
    index.set(metadata=False)
    c = client(index, tmp_path)
    (torch,) = c.list_files("cu130", "torch")
    assert not torch.has_metadata
    meta = MetadataReader(c).read(torch)
    assert meta is not None
    assert meta.cuda_toolkit() == "13.0.3" and meta.cuda_minor() == "13.0"
    kinds = served(index)
    assert kinds and set(kinds) == {"range"}, kinds


def test_an_index_without_ranges_or_metadata_gives_a_note_not_a_download(
    index: IndexServer, tmp_path: Path
) -> None:
    index.set(metadata=False, ranges=False)
    c = client(index, tmp_path)
    (torch,) = c.list_files("cu130", "torch")
    reader = MetadataReader(c)
    assert reader.read(torch) is None
    assert any("range requests" in n for n in reader.notes)


def test_a_metadata_file_with_the_wrong_hash_is_not_believed(index: IndexServer, tmp_path: Path) -> None:
    c = client(index, tmp_path)
    (torch,) = c.list_files("cu130", "torch")
    forged = IndexFile(**{**{s: getattr(torch, s) for s in torch.__slots__}, "metadata_sha256": "0" * 64})
    meta = MetadataReader(c).read(forged)
    assert meta is not None and meta.cuda_toolkit() == "13.0.3"  # read again from the wheel itself
    assert served(index)[0] == "metadata" and "range" in served(index)


def test_what_was_read_is_cached_by_the_wheels_hash(index: IndexServer, tmp_path: Path) -> None:
    c = client(index, tmp_path)
    files = c.list_files("cu130", "torchvision")
    first = [MetadataReader(c).read(f) for f in files]
    before = len(served(index))
    second = [MetadataReader(c).read(f) for f in files]  # a new reader: from the disk cache
    assert second == first and len(served(index)) == before


def _published(c: IndexClient) -> Published:
    return Published({"cu130": {p: c.list_files("cu130", p) for p in ("torch", "torchvision")}})


CP = [Tag("py3", "none", "any")]


def test_a_release_no_data_knows_is_paired_by_what_its_companions_declare(
    index: IndexServer, tmp_path: Path
) -> None:
    """torch 2.99 is in no table; torchvision 0.29.1 declares torch>=2.14.0, 0.28.0 torch==2.13.0."""
    c = client(index, tmp_path)
    pub = _published(c)
    choice = choose_torch(
        installed=None, hardware=hardware("580.82.07", "13.0", RTX_4090), knowledge=KN, published=pub, tags=CP
    )
    reader = MetadataReader(c)
    declared = {}
    for f in pub.of("cu130", "torchvision"):
        meta = reader.read(f)
        assert meta is not None
        spec = meta.requirement_on("torch")
        assert spec is not None
        declared[f.url] = spec
    installed = reading("2.13.0+cu130", torchvision="0.28.0+cu130")
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP, declared=declared
    )
    assert [str(f.version) for f in companions] == ["0.29.1+cu130"]
    assert not any("guess" in n for n in notes)
    # Without the metadata the +15 rule would find nothing (0.114) and say so.
    companions, notes = choose_companions(
        choice=choice, installed=installed, knowledge=KN, published=pub, tags=CP
    )
    assert companions == ()


@pytest.mark.parametrize(
    ("pattern", "torch_spec"),
    [
        ("torchvision-0.28.0-*.whl", "==2.13.0"),
        ("torchvision-0.29.0-*.whl", "==2.14.0"),
        ("torchvision-0.29.1-*.whl", ">=2.14.0"),
    ],
)
def test_real_torchvision_wheels_declare_their_torch_through_ranges(
    pattern: str, torch_spec: str, tmp_path: Path
) -> None:
    """The pins knowledge.json records (VISION-META), read from the real wheels through ranges."""
    wheel = real_wheel(pattern)
    if wheel is None:
        pytest.skip(f"no real {pattern} on this machine")
    folder = tmp_path / "root" / "cu130" / "torchvision"
    folder.mkdir(parents=True)
    shutil.copy(wheel, folder / wheel.name)
    with IndexServer(tmp_path / "root") as server:
        server.set(metadata=False)
        c = client(server, tmp_path)
        (file,) = c.list_files("cu130", "torchvision")
        meta = MetadataReader(c).read(file)
        assert meta is not None and meta.requirement_on("torch") == SpecifierSet(torch_spec)
        assert set(served(server)) == {"range"}


def test_the_real_torch_2_14_1_wheel_declares_cuda_13_0_3(tmp_path: Path) -> None:
    """PyPI's torch 2.14.1 (unlabelled: the PyPI default) pins cuda-toolkit==13.0.3; read by ranges
    from a 550 MB wheel without downloading it."""
    wheel = real_wheel("torch-2.14.1-*manylinux*x86_64.whl")
    if wheel is None:
        pytest.skip("the real torch 2.14.1 wheel is not on this machine")
    folder = tmp_path / "root" / "cu130" / "torch"
    folder.mkdir(parents=True)
    (folder / wheel.name).symlink_to(wheel)
    with IndexServer(tmp_path / "root") as server:
        url = f"{server.url}/cu130/torch/{wheel.name}"
        file = IndexFile(
            project="torch",
            filename=wheel.name,
            url=url,
            version=Version("2.14.1"),
            tags=frozenset(),
            sha256=None,
            requires_python=None,
            yanked=False,
            size=None,
        )
        c = client(server, tmp_path)
        meta = MetadataReader(c).read(file)
        assert meta is not None and meta.cuda_toolkit() == "13.0.3" and meta.cuda_minor() == "13.0"
        fetched = sum(1 for r in server.requests if r.served == "range")
        assert 1 <= fetched <= 5


def test_metadata_parsing_reads_only_the_headers() -> None:
    text = (
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.8.0\n"
        'Requires-Dist: nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux"\n'
        'Requires-Dist: sympy>=1.13.3\nRequires-Dist: opt-einsum>=3.3; extra == "opt-einsum"\n\n'
        "Requires-Dist: torch==9.9 (this is the description, not a header)\n"
    )
    meta = parse_metadata(text)
    assert meta.cuda_toolkit() == "12.8.90" and meta.cuda_minor() == "12.8"
    assert meta.requirement_on("torch") is None
    assert meta.requirement_on("opt-einsum") is None  # behind an extra


# --- make_plan end to end: the companions a plan pairs by what they declare ------------------


def _target(installed_torch: str, torchvision: str) -> Target:
    root = Path("/home/ana/proj/.venv")
    env = PythonEnv(root, root / "bin/python", "3.12.4", EnvKind.VENV, True, (), Platform.LINUX)
    return Target(
        env, (Tag("py3", "none", "any"),), "3.12.4", reading(installed_torch, torchvision=torchvision)
    )


@pytest.fixture
def newer_index(tmp_path: Path) -> Iterator[IndexServer]:
    """torch 2.99 (no data knows it), a torchvision pinned to it and older ones pinned elsewhere."""
    publish(
        tmp_path / "root",
        [
            StandIn("torch", "2.99.0+cu130", cuda="13.0"),
            StandIn("torch", "2.13.0+cu130", cuda="13.0"),
            StandIn("torchvision", "0.200.0+cu130", requires=["torch==2.99.0"]),
            StandIn("torchvision", "0.28.0+cu130", requires=["torch==2.13.0"]),
        ],
        "cu130",
    )
    server = IndexServer(tmp_path / "root").start()
    yield server
    server.stop()


@pytest.mark.parametrize("metadata", [True, False], ids=["pep658", "ranges"])
def test_make_plan_pairs_an_unknown_release_by_its_companions_declaration(
    newer_index: IndexServer, tmp_path: Path, metadata: bool
) -> None:
    newer_index.set(metadata=metadata)
    c = client(newer_index, tmp_path)
    hw = hardware("580.82.07", "13.0", RTX_4090)
    # 2.13 with 0.28.0 installed and fitting: kept, and 0.28.0 is what 0.28.0 itself declares.
    kept = make_plan(_target("2.13.0+cu130", "0.28.0+cu130"), hw, KN, c, index_base=newer_index.url)
    assert kept.requirements == ("torch==2.13.0+cu130", "torchvision==0.28.0+cu130")
    # 2.99, a release no data knows, is kept; its torchvision is the one that declares it.
    unknown = make_plan(_target("2.99.0+cu130", "0.28.0+cu130"), hw, KN, c, index_base=newer_index.url)
    assert unknown.requirements == ("torch==2.99.0+cu130", "torchvision==0.200.0+cu130")
    assert not any("guess" in n for n in unknown.notes), unknown.notes
    assert ("metadata" in served(newer_index)) is metadata
    assert ("range" in served(newer_index)) is not metadata


def test_make_plan_without_any_metadata_falls_back_to_the_rule_and_says_it_guessed(
    newer_index: IndexServer, tmp_path: Path
) -> None:
    newer_index.set(metadata=False, ranges=False)
    publish(newer_index.root, [StandIn("torchvision", "0.114.0+cu130", requires=["torch==2.99.0"])], "cu130")
    hw = hardware("580.82.07", "13.0", RTX_4090)
    plan = make_plan(
        _target("2.99.0+cu130", "0.28.0+cu130"),
        hw,
        KN,
        client(newer_index, tmp_path),
        index_base=newer_index.url,
    )
    assert plan.requirements == ("torch==2.99.0+cu130", "torchvision==0.114.0+cu130")
    assert any("by a guess" in n for n in plan.notes), plan.notes
    assert any("did not say which torch" in n for n in plan.notes), plan.notes
