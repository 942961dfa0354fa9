"""Whatever JSON a `--from` file holds, reading it ends in a document or one DocumentError, and
every document that reads renders: no other exception reaches the CLI as a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import report_docs as rd
from torchdoctor.agent.report.documents import DocumentError, document_from_json, parse_document
from torchdoctor.agent.report.model import LocalHistory
from torchdoctor.agent.report.render import render_fleet, render_machine

NOW = datetime(2026, 12, 1, tzinfo=UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
# Where a foreign value may land: every key the reader looks at, at each level.
PLACES = [
    ("schema_version",), ("status",), ("notes",), ("hardware",), ("environments",),
    ("hardware", "gpus"), ("hardware", "gpus", 0), ("hardware", "gpus", 0, "name"),
    ("hardware", "gpus", 0, "memory_mib"), ("hardware", "gpus", 0, "compute_capability"),
    ("hardware", "driver_version"), ("hardware", "notes"), ("environments", 0),
    ("environments", 0, "path"), ("environments", 0, "status"), ("environments", 0, "torch"),
    ("environments", 0, "torch", "version"), ("environments", 0, "findings"),
    ("environments", 0, "findings", 0), ("environments", 0, "findings", 0, "severity"),
    ("environments", 0, "findings", 0, "fix"),
]  # fmt: skip


def _put(doc: Any, place: tuple[str | int, ...], value: object) -> None:
    target = doc
    for step in place[:-1]:
        target = target[step]
    target[place[-1]] = value


def _render(doc_text: str) -> None:
    try:
        doc = parse_document(doc_text, name="m", source="m.json")
    except DocumentError:
        return
    render_fleet([doc], [], generated_at=NOW, version="t")
    render_machine(doc, LocalHistory(), generated_at=NOW, version="t")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=JSON)
def test_any_value_anywhere_reads_or_is_one_reason(place: tuple[str | int, ...], value: object) -> None:
    doc = rd.document(0, environments=[rd.environment("/p", "broken", codes=(0,))])
    _put(doc, place, value)
    _render(json.dumps(doc))


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2000), junk=st.binary(max_size=20))
def test_cut_or_garbled_text_is_one_reason(cut: int, junk: bytes) -> None:
    text = json.dumps(rd.document(1))
    _render(text[:cut] + junk.decode("latin-1"))


def test_a_huge_integer_is_a_reason_not_a_crash() -> None:
    text = (
        '{"schema_version": 1, "hardware": {}, "environments": [], "status": "ok", "x": ' + "9" * 5000 + "}"
    )
    try:
        parse_document(text, name="m", source="m")
    except DocumentError as exc:
        assert "not valid JSON" in str(exc)
    else:
        raise AssertionError("a 5000-digit integer was accepted")
    doc = rd.document(0)
    doc["hardware"]["gpus"][0]["memory_mib"] = 10**400
    assert document_from_json(doc, name="m", source="m").hardware.gpus[0].memory_mib is None
