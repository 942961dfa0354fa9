"""Is this copy's knowledge up to date with the index? What the data knows, and what the index
publishes that it does not (`torchdoctor knowledge [--check-index]`).

A stale copy must say so instead of deciding quietly: a torch release or a variant the data has
never heard of is still planned (from the index and the wheels' own metadata), but the person
should know that torchdoctor's tables are older than the index.

`summarise` and `compare` are pure; `read_index` asks the index once for its all-variants torch
page (`BASE/torch/`, which download.pytorch.org serves), else each known variant's page, and reads
the CUDA toolkit of each variant the data does not know from one of its wheels' METADATA.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.version import Version

from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.facts.knowledge import Knowledge
from torchdoctor.service.facts.variants import cuda_key, local_label
from torchdoctor.service.install.index import IndexClient, IndexFile, parse_page
from torchdoctor.service.install.metadata import MetadataReader


@dataclass(frozen=True, slots=True)
class KnowledgeSummary:
    retrieved: str
    releases: tuple[str, ...]  # oldest first
    variants: Mapping[str, tuple[str, ...]]  # release -> its variants
    newest_release: str | None
    newest_cuda: str | None


@dataclass(frozen=True, slots=True)
class IndexNews:
    """What the index publishes beyond the data. Empty tuples: the data is up to date."""

    index_base: str
    new_releases: tuple[tuple[str, tuple[str, ...]], ...]  # ("2.16.0", ("cpu", "cu132")), newest first
    new_variants: tuple[tuple[str, tuple[str, ...]], ...]  # ("cu129", ("2.13.0",)): of releases it knows
    variant_cuda: Mapping[str, str] = field(default_factory=dict)  # "cu135" -> "13.5.0", from METADATA
    asked: str = ""  # "the all-variants page" or "each known variant's page"
    notes: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return not self.new_releases and not self.new_variants


def summarise(knowledge: Knowledge) -> KnowledgeSummary:
    releases = tuple(sorted(knowledge.releases, key=Version))
    return KnowledgeSummary(
        retrieved=knowledge.retrieved,
        releases=releases,
        variants={r: knowledge.releases[r].variants for r in releases},
        newest_release=knowledge.newest_release(),
        newest_cuda=knowledge.newest_cuda(),
    )


def compare(
    knowledge: Knowledge, files: Iterable[IndexFile]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(new releases: version -> variants, new variants of known releases: variant -> versions).

    Only final releases with a variant label count: nightlies and release candidates come and go,
    and an unlabelled wheel names no variant.
    """
    new_releases: dict[str, set[str]] = {}
    new_variants: dict[str, set[str]] = {}
    for f in files:
        variant = local_label(str(f.version))
        if variant is None or f.version.is_prerelease or f.version.is_devrelease:
            continue
        version = str(f.public_version)
        release = knowledge.release(version)
        if release is None:
            new_releases.setdefault(version, set()).add(variant)
        elif variant not in release.variants:
            new_variants.setdefault(variant, set()).add(version)
    return new_releases, new_variants


def known_variants(knowledge: Knowledge) -> tuple[str, ...]:
    return tuple(sorted({v for rel in knowledge.releases.values() for v in rel.variants}))


def read_index(knowledge: Knowledge, client: IndexClient, reader: MetadataReader | None = None) -> IndexNews:
    """Ask the index what it publishes; raises the index errors `plan` raises (exit 1)."""
    notes: list[str] = []
    files, asked = _all_variants_page(client)
    if files is None:
        asked = "each known variant's page"
        notes.append(
            f"{client.base_url}/torch/ (the page listing every variant) is not served, so only the "
            "variants this copy knows were asked: a new variant would not show"
        )
        collected: list[IndexFile] = []
        for variant in known_variants(knowledge):
            collected += client.list_files(variant, "torch")
        client.raise_if_all_missing()
        files = tuple(collected)
    new_releases, new_variants = compare(knowledge, files)
    reader = reader or MetadataReader(client)
    cudas = _variant_cudas(
        knowledge, files, {*new_variants, *(v for vs in new_releases.values() for v in vs)}, reader
    )
    notes += reader.notes
    return IndexNews(
        index_base=client.base_url,
        new_releases=tuple(
            (v, _sorted_variants(vs))
            for v, vs in sorted(new_releases.items(), key=lambda kv: Version(kv[0]), reverse=True)
        ),
        new_variants=tuple(
            (variant, tuple(sorted(vs, key=Version)))
            for variant, vs in sorted(new_variants.items(), key=lambda kv: cuda_key(kv[0]))
        ),
        variant_cuda=cudas,
        asked=asked,
        notes=(*notes, *client.notes),
    )


def _all_variants_page(client: IndexClient) -> tuple[tuple[IndexFile, ...] | None, str]:
    """download.pytorch.org lists every variant's torch wheels at BASE/torch/; mirrors may not."""
    url = f"{client.base_url}/torch/"
    try:
        with client.open_file(url, {"Accept": "text/html"}) as response:
            body = response.read(64 * 1024 * 1024)
            content_type = response.headers.get("Content-Type", "text/html")
            final_url = response.geturl() or url
    except (OSError, TorchdoctorError):
        return None, ""
    page = parse_page(body.decode("utf-8", errors="replace"), content_type, final_url, "torch")
    if not page.files:
        return None, ""
    return page.files, "the all-variants page"


def _variant_cudas(
    knowledge: Knowledge, files: Sequence[IndexFile], variants: Iterable[str], reader: MetadataReader
) -> dict[str, str]:
    """The CUDA toolkit of each CUDA variant the data does not know, from the METADATA of its
    newest wheel: a cu135 is then not only a name but "built with CUDA 13.5.0"."""
    found: dict[str, str] = {}
    known = set(known_variants(knowledge))
    for variant in sorted(variants, key=cuda_key):
        if not variant.startswith("cu") or variant in known:
            continue
        wheels = [f for f in files if local_label(str(f.version)) == variant]
        if not wheels:
            continue
        newest = max(wheels, key=lambda f: f.version)
        meta = reader.read(newest)
        toolkit = meta.cuda_toolkit() if meta is not None else None
        if toolkit is not None:
            found[variant] = toolkit
    return found


def _sorted_variants(variants: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(variants, key=lambda v: (v.startswith("cu"), cuda_key(v), v)))


def summary_to_json(
    summary: KnowledgeSummary, override: str | None, news: IndexNews | None
) -> dict[str, object]:
    """The `knowledge --json` document (docs/contract.md)."""
    return {
        "schema_version": 1,
        "retrieved": summary.retrieved or None,
        "override": override,
        "newest_release": summary.newest_release,
        "newest_cuda": summary.newest_cuda,
        "releases": [{"release": r, "variants": list(summary.variants[r])} for r in summary.releases],
        "index": None
        if news is None
        else {
            "index_base": news.index_base,
            "asked": news.asked,
            "up_to_date": news.up_to_date,
            "new_releases": [{"version": v, "variants": list(vs)} for v, vs in news.new_releases],
            "new_variants": [{"variant": v, "versions": list(vs)} for v, vs in news.new_variants],
            "variant_cuda": dict(news.variant_cuda),
            "notes": list(news.notes),
        },
    }
