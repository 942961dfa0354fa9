"""Parsing PEP 503 / PEP 691 project pages, URL rules, and picking installable files (all pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from torchdoctor.service.errors import BadInputError
from torchdoctor.service.install.index import (
    IndexFile,
    IndexResponseError,
    InsecureIndexError,
    compatible,
    parse_page,
    parse_simple_html,
    parse_simple_json,
    validate_index_base,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "index"
CU128_PAGE = "https://download.pytorch.org/whl/cu128/torch/"
H1 = "1" * 64
H2 = "ab" * 32


def real_page() -> list[IndexFile]:
    return list(parse_simple_html((FIXTURES / "cu128-torch.html").read_text(), CU128_PAGE, "torch").files)


def by_name(files: list[IndexFile], filename: str) -> IndexFile:
    return next(f for f in files if f.filename == filename)


def page(*anchors: str, head: str = "") -> str:
    links = "\n".join(f"    {a}<br/>" for a in anchors)
    return f"<!DOCTYPE html>\n<html>\n  <head>{head}</head>\n  <body>\n{links}\n  </body>\n</html>\n"


# --- the real PyTorch page -----------------------------------------------------------------------


def test_real_page_lists_every_wheel_with_decoded_names() -> None:
    files = real_page()
    assert len(files) == 19
    assert all(f.project == "torch" for f in files)
    assert all("+" in f.filename and "%2B" not in f.filename for f in files)
    assert {f.local for f in files} == {"cu128"}


def test_real_page_root_relative_links_resolve_against_the_page_host() -> None:
    win = by_name(real_page(), "torch-2.7.0+cu128-cp312-cp312-win_amd64.whl")
    assert win.url == "https://download.pytorch.org/whl/cu128/torch-2.7.0%2Bcu128-cp312-cp312-win_amd64.whl"
    assert win.sha256 == "1704e5dd66c9221e4e8b6ae2d80cbf54e129571e643f5fa9ca78cc6d2096403a"
    assert win.tags == frozenset({Tag("cp312", "cp312", "win_amd64")})
    assert win.has_metadata
    assert win.metadata_sha256 == "d51356a768c4e35d5219c34e4d984071fcc0d2ab58673cbc969b75989d312fab"
    assert win.metadata_url == win.url + ".metadata"


def test_real_page_absolute_link_to_another_host_is_kept_and_has_no_hash() -> None:
    r2 = by_name(real_page(), "torch-2.11.0+cu128-cp310-cp310-manylinux_2_28_x86_64.whl")
    assert r2.url.startswith("https://download-r2.pytorch.org/whl/cu128/torch-2.11.0%2Bcu128-")
    assert r2.sha256 is None


def test_real_page_aarch64_wheels_without_hash_fragment_have_no_sha256() -> None:
    files = real_page()
    aarch64 = [f for f in files if f.filename.endswith("aarch64.whl")]
    x86 = [f for f in files if f.filename.endswith("2_28_x86_64.whl") and f.version == Version("2.7.0+cu128")]
    assert len(aarch64) == 6
    assert all(f.sha256 is None for f in aarch64)
    assert len(x86) == 6
    assert all(f.sha256 is not None and len(f.sha256) == 64 for f in x86)


def test_versions_compare_as_versions_not_as_text() -> None:
    files = real_page()
    # The page lists 2.11.0 first only because its generator sorts S3 keys as text.
    assert max(f.version for f in files) == Version("2.11.0+cu128")
    assert max(f.public_version for f in files) == Version("2.11.0")
    assert max(f.filename.split("-")[1] for f in files) == "2.7.0+cu128"  # what a string compare gets


def test_free_threaded_and_py39_wheels_are_told_apart() -> None:
    files = real_page()
    ft = by_name(files, "torch-2.7.0+cu128-cp313-cp313t-win_amd64.whl")
    assert ft.tags == frozenset({Tag("cp313", "cp313t", "win_amd64")})
    assert by_name(files, "torch-2.7.0+cu128-cp39-cp39-win_amd64.whl").public_version == Version("2.7.0")


# --- HTML details ---------------------------------------------------------------------------------


def test_html_attributes_are_unescaped_and_yanked_is_seen() -> None:
    body = page(
        f'<a href="torch-2.7.1%2Bcpu-py3-none-any.whl#sha256={H1}" data-requires-python="&gt;=3.9" '
        'data-yanked="">torch-2.7.1+cpu-py3-none-any.whl</a>',
        f'<a href="torch-2.7.0%2Bcpu-py3-none-any.whl#sha256={H2.upper()}" '
        'data-requires-python="&gt;=3.9,&lt;3.14">x</a>',
    )
    files = parse_simple_html(body, "http://127.0.0.1:8080/cpu/torch/", "torch").files
    first, second = files
    assert first.requires_python == ">=3.9"
    assert first.yanked
    assert first.url == "http://127.0.0.1:8080/cpu/torch/torch-2.7.1%2Bcpu-py3-none-any.whl"
    assert second.requires_python == ">=3.9,<3.14"
    assert not second.yanked
    assert second.sha256 == H2  # stored lower-case
    assert not second.has_metadata


def test_base_href_changes_where_relative_links_point() -> None:
    body = page(
        '<a href="torch-2.7.1-py3-none-any.whl">x</a>',
        head='<base href="https://mirror.example.org/files/">',
    )
    (item,) = parse_simple_html(body, "https://index.example.org/cpu/torch/", "torch").files
    assert item.url == "https://mirror.example.org/files/torch-2.7.1-py3-none-any.whl"


def test_other_hash_algorithms_are_not_taken_for_sha256() -> None:
    body = page(f'<a href="torch-2.7.1-py3-none-any.whl#md5={"0" * 32}">x</a>')
    (item,) = parse_simple_html(body, "https://i.example/cpu/torch/", "torch").files
    assert item.sha256 is None


def test_non_wheels_and_other_projects_are_left_out_and_bad_names_noted() -> None:
    body = page(
        '<a href="torch-2.7.1.tar.gz">sdist</a>',
        '<a href="torchvision-0.22.1-py3-none-any.whl">another project</a>',
        '<a href="torch-not-a-wheel.whl">broken</a>',
        '<a href="/whl/">no file</a>',
        "<a>no href</a>",
        '<a href="Torch-2.7.1-py3-none-any.whl">mixed case name</a>',
    )
    parsed = parse_simple_html(body, "https://i.example/cpu/torch/", "Torch")
    assert [f.filename for f in parsed.files] == ["Torch-2.7.1-py3-none-any.whl"]
    assert parsed.files[0].project == "torch"
    assert len(parsed.notes) == 1
    assert "torch-not-a-wheel.whl" in parsed.notes[0]


def test_a_malformed_hash_skips_the_file_with_a_note() -> None:
    body = page('<a href="torch-2.7.1-py3-none-any.whl#sha256=abc">x</a>')
    parsed = parse_simple_html(body, "https://i.example/cpu/torch/", "torch")
    assert parsed.files == ()
    assert "malformed sha256" in parsed.notes[0]


def test_metadata_attribute_true_without_hash() -> None:
    body = page('<a href="torch-2.7.1-py3-none-any.whl" data-dist-info-metadata="true">x</a>')
    (item,) = parse_simple_html(body, "https://i.example/cpu/torch/", "torch").files
    assert item.has_metadata
    assert item.metadata_sha256 is None


@pytest.mark.parametrize(
    "href",
    [
        "http://download.pytorch.org/whl/cu128/torch-2.7.1-py3-none-any.whl",
        "ftp://download.pytorch.org/torch-2.7.1-py3-none-any.whl",
        "file:///etc/torch-2.7.1-py3-none-any.whl",
    ],
)
def test_a_plain_http_or_odd_scheme_file_link_is_refused(href: str) -> None:
    body = page(f'<a href="{href}">x</a>')
    with pytest.raises(InsecureIndexError, match="https") as info:
        parse_simple_html(body, CU128_PAGE, "torch")
    assert isinstance(info.value, BadInputError)


def test_plain_http_file_links_to_loopback_are_fine() -> None:
    body = page('<a href="http://127.0.0.1:9000/cu128/torch/torch-2.7.1-py3-none-any.whl">x</a>')
    (item,) = parse_simple_html(body, CU128_PAGE, "torch").files
    assert item.url.startswith("http://127.0.0.1:9000/")


# --- PEP 691 JSON ---------------------------------------------------------------------------------


def json_page(*files: dict[str, object], api: str = "1.1") -> str:
    return json.dumps({"meta": {"api-version": api}, "name": "torch", "files": list(files)})


def test_json_page_gives_hashes_sizes_metadata_and_yanked_reasons() -> None:
    body = json_page(
        {
            "filename": "torch-2.7.1+cu128-cp312-cp312-win_amd64.whl",
            "url": "../../files/torch-2.7.1%2Bcu128-cp312-cp312-win_amd64.whl",
            "hashes": {"sha256": H1, "md5": "0" * 32},
            "requires-python": ">=3.9.0",
            "yanked": False,
            "core-metadata": {"sha256": H2},
            "size": 3456,
        },
        {
            "filename": "torch-2.7.0+cu128-cp312-cp312-win_amd64.whl",
            "url": "https://r2.example/torch-2.7.0%2Bcu128-cp312-cp312-win_amd64.whl",
            "hashes": {},
            "yanked": "broken build",
        },
        {"filename": "torch-2.7.0.tar.gz", "url": "torch-2.7.0.tar.gz", "hashes": {}},
    )
    parsed = parse_simple_json(body, "https://i.example/whl/cu128/torch/", "torch")
    new, old = parsed.files
    assert new.url == "https://i.example/whl/files/torch-2.7.1%2Bcu128-cp312-cp312-win_amd64.whl"
    assert (new.sha256, new.size, new.requires_python) == (H1, 3456, ">=3.9.0")
    assert (new.has_metadata, new.metadata_sha256) == (True, H2)
    assert old.yanked
    assert old.sha256 is None
    assert old.size is None


def test_content_type_picks_the_parser() -> None:
    body = json_page({"filename": "torch-2.7.1-py3-none-any.whl", "url": "torch-2.7.1-py3-none-any.whl"})
    files = parse_page(body, "application/vnd.pypi.simple.v1+json", "https://i.example/cpu/torch/", "torch")
    assert len(files.files) == 1
    html_files = parse_page(
        page('<a href="torch-2.7.1-py3-none-any.whl">x</a>'),
        "text/html; charset=utf-8",
        "https://i.example/cpu/torch/",
        "torch",
    )
    assert len(html_files.files) == 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{not json", "PEP 691"),
        (json.dumps({"meta": {"api-version": "1.0"}}), "no 'files' list"),
        (json_page(api="2.0"), "api-version 2.0"),
        (json_page({"filename": "x.whl"}), "without a url"),
    ],
)
def test_unreadable_json_is_an_index_response_error(body: str, why: str) -> None:
    with pytest.raises(IndexResponseError, match=why):
        parse_simple_json(body, "https://i.example/cpu/torch/", "torch")


# --- URL rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://download.pytorch.org/whl", "https://download.pytorch.org/whl"),
        ("https://download.pytorch.org/whl/", "https://download.pytorch.org/whl"),
        (
            "  https://mirror.example.org/pytorch/whl/nightly/ ",
            "https://mirror.example.org/pytorch/whl/nightly",
        ),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.2:8080/whl", "http://127.0.0.2:8080/whl"),
        ("http://localhost:8080/whl", "http://localhost:8080/whl"),
        ("http://[::1]:8080/whl", "http://[::1]:8080/whl"),
        ("HTTPS://download.pytorch.org/whl", "HTTPS://download.pytorch.org/whl"),
    ],
)
def test_https_and_loopback_http_index_bases_are_accepted(url: str, expected: str) -> None:
    assert validate_index_base(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://download.pytorch.org/whl",
        "http://10.0.0.5/whl",
        "http://127.0.0.1.nip.io/whl",
        "http://[::2]/whl",
        "ftp://download.pytorch.org/whl",
        "file:///srv/whl",
        "download.pytorch.org/whl",
        "https:///whl",
        "",
    ],
)
def test_everything_else_is_refused_in_one_sentence(url: str) -> None:
    with pytest.raises(InsecureIndexError) as info:
        validate_index_base(url)
    message = str(info.value)
    assert message.endswith(".")
    assert "\n" not in message
    assert info.value.exit_code == 2


# --- compatible -----------------------------------------------------------------------------------


def make(filename: str, *, requires_python: str | None = None, yanked: bool = False) -> IndexFile:
    name, version, _build, tags = parse_wheel_filename(filename)
    return IndexFile(
        project=name,
        filename=filename,
        url=f"https://i.example/{filename}",
        version=version,
        tags=frozenset(tags),
        sha256=None,
        requires_python=requires_python,
        yanked=yanked,
        size=None,
    )


def test_compatible_keeps_matching_tags_python_versions_and_drops_yanked() -> None:
    tags = [Tag("cp312", "cp312", "win_amd64"), Tag("py3", "none", "any")]
    files = [
        make("torch-2.7.1+cu128-cp312-cp312-win_amd64.whl"),
        make("torch-2.7.1+cu128-cp311-cp311-win_amd64.whl"),
        make("torch-2.7.1+cu128-cp312-cp312-manylinux_2_28_x86_64.whl"),
        make("torch-2.7.0+cu128-cp312-cp312-win_amd64.whl", yanked=True),
        make("torchaudio-2.11.1+cu128-py3-none-any.whl", requires_python=">=3.10"),
        make("torchaudio-2.11.0+cu128-py3-none-any.whl", requires_python=">=3.13"),
        make("torchaudio-2.10.0+cu128-py3-none-any.whl", requires_python="not a specifier"),
    ]
    kept = [f.filename for f in compatible(files, tags, "3.12.4")]
    assert kept == [
        "torch-2.7.1+cu128-cp312-cp312-win_amd64.whl",
        "torchaudio-2.11.1+cu128-py3-none-any.whl",
        "torchaudio-2.10.0+cu128-py3-none-any.whl",
    ]


def test_compatible_admits_prerelease_pythons() -> None:
    item = make("torch-2.7.1-py3-none-any.whl", requires_python=">=3.9")
    assert compatible([item], [Tag("py3", "none", "any")], "3.14.0rc1") == (item,)


def test_one_plain_http_link_among_https_ones_is_skipped_with_a_note() -> None:
    body = page(
        '<a href="http://old.example.com/whl/torch-2.0.0%2Bcu118-py3-none-any.whl">old</a>'
        '<a href="https://download.pytorch.org/whl/cu128/torch-2.7.1%2Bcu128-py3-none-any.whl">new</a>'
    )
    parsed = parse_simple_html(body, CU128_PAGE, "torch")
    assert [str(f.version) for f in parsed.files] == ["2.7.1+cu128"]
    assert any("http://old.example.com" in note for note in parsed.notes)
