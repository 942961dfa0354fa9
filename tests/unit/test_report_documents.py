"""Reading `check --json` documents for the fleet report: every bad one is a reason, never a crash."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from tests.support import report_docs as rd
from torchdoctor.agent.report.documents import DocumentError, document_from_json, parse_document
from torchdoctor.agent.report.model import MachineDoc, Unreadable
from torchdoctor.agent.report.sources import load, machine_names, read_one


def test_a_contract_document_reads_back_every_fact() -> None:
    env = rd.environment("/srv/a/.venv", "broken", torch="2.5.1+cu124", codes=(0,))
    doc = parse_document(json.dumps(rd.document(1, environments=[env])), name="ws1", source="ws1.json")
    assert doc.status == "broken"
    assert doc.hardware.driver_version == "572.16"
    assert doc.hardware.gpus[0].compute_capability == "12.0"
    assert doc.hardware.gpu_model == "NVIDIA GeForce RTX 5090"
    (view,) = doc.environments
    assert (view.path, view.torch, view.variant, view.status) == (
        "/srv/a/.venv",
        "2.5.1+cu124",
        "cu124",
        "broken",
    )
    assert view.findings[0].code == "gpu-arch-unsupported"
    assert doc.counts == {"ok": 0, "warn": 0, "broken": 1, "no-torch": 0}


def test_the_real_check_writer_is_read_by_the_report() -> None:
    """check_to_json (what `check --json` prints) over a real diagnosis reads back, and the fix's
    commands are the ones the page offers to copy."""
    from tests.support.hw import RTX_5090, env, hardware, reading
    from torchdoctor.agent.report.render import commands_in
    from torchdoctor.service.facts.knowledge import load_knowledge
    from torchdoctor.service.models import CheckReport, EnvReport
    from torchdoctor.service.rules.check import check_to_json
    from torchdoctor.service.rules.diagnose import diagnose

    hw = hardware("572.16", "12.8", RTX_5090)
    old = reading("2.5.1+cu124")
    findings = diagnose(env(), old, hw, load_knowledge())
    report = CheckReport(hw, (EnvReport(env(), old.build, findings),), ("a note",))
    doc = document_from_json(check_to_json(report), name="here", source="")
    assert doc.notes == ("a note",)
    assert doc.status == "broken"
    (view,) = doc.environments
    assert view.torch == "2.5.1+cu124"
    assert [f.code for f in view.findings] == [str(f.code) for f in findings]
    commands = commands_in(view.findings[0].fix)
    assert commands[0] == "torchdoctor fix --env /home/ana/proj/.venv"
    assert any(
        "pip install" in c and "--index-url https://download.pytorch.org/whl/cu12" in c for c in commands
    )


def test_added_keys_are_ignored_and_missing_facts_are_null() -> None:
    data = rd.document(0)
    data["new_key"] = {"anything": 1}
    data["environments"][0]["future"] = [1, 2]
    del data["hardware"]["platform"]
    data["environments"][0]["torch"] = None
    doc = document_from_json(data, name="n", source="n.json")
    assert doc.hardware.platform is None
    assert doc.environments[0].torch is None


def _broken(mutate: str) -> object:
    data = rd.document(0, environments=[rd.environment("/p", "warn", codes=(4,))])
    if mutate == "future":
        data["schema_version"] = 2
    elif mutate == "no-version":
        del data["schema_version"]
    elif mutate == "status":
        data["environments"][0]["status"] = "sideways"
    elif mutate == "envs-not-list":
        data["environments"] = {"path": "/p"}
    elif mutate == "no-path":
        del data["environments"][0]["path"]
    elif mutate == "severity":
        data["environments"][0]["findings"][0]["severity"] = "fatal"
    elif mutate == "gpu-name":
        data["hardware"]["gpus"][0]["name"] = {"x": 1}
    elif mutate == "not-object":
        return [1, 2, 3]
    elif mutate == "no-hardware":
        del data["hardware"]
    return data


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        ("future", "written by a newer torchdoctor (schema_version 2"),
        ("no-version", "schema_version is 'None'"),
        ("status", "environments[0].status is 'sideways'"),
        ("envs-not-list", "environments is not a list"),
        ("no-path", "environments[0] has no 'path'"),
        ("severity", "environments[0].findings[0].severity is 'fatal'"),
        ("gpu-name", "hardware.gpus[0].name is not a string"),
        ("not-object", "the document is not a JSON object"),
        ("no-hardware", "it has no 'hardware'"),
    ],
)
def test_a_wrong_document_is_one_readable_reason(mutate: str, says: str) -> None:
    with pytest.raises(DocumentError) as caught:
        document_from_json(_broken(mutate), name="n", source="n.json")
    assert says in str(caught.value)


def test_truncated_and_empty_text_say_so() -> None:
    text = json.dumps(rd.document(0))
    with pytest.raises(DocumentError, match=r"not valid JSON \(.*; the file looks truncated\)"):
        parse_document(text[: len(text) // 2], name="n", source="n")
    with pytest.raises(DocumentError, match="the file is empty"):
        parse_document("  \n", name="n", source="n")
    with pytest.raises(DocumentError, match="nested too deeply"):
        parse_document("[" * 100_000, name="n", source="n")


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_a_folder_a_glob_and_files_mix_good_and_bad(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    good = json.dumps(rd.document(0))
    _write(fleet, "a.json", good)
    _write(fleet, "b.json", good[:40])  # truncated by a full disk
    _write(fleet, "c.json", json.dumps({**rd.document(0), "schema_version": 9}))
    _write(fleet, "notes.txt", "not a document and not *.json: not read from the folder")
    other = tmp_path / "other"
    other.mkdir()
    _write(other, "d.json", good)
    _write(other, "e.json", good)
    loaded = load([str(fleet), str(other / "*.json"), str(fleet / "a.json"), str(tmp_path / "gone.json")])
    assert [d.name for d in loaded.documents] == ["a", "d", "e"]  # a.json given twice, read once
    reasons = {Path(u.source).name: u.reason for u in loaded.unreadable}
    assert reasons["b.json"].startswith("not valid JSON (")
    assert "newer torchdoctor" in reasons["c.json"]
    assert reasons["gone.json"] == "no such file or folder"


def test_a_pattern_and_a_folder_that_match_nothing_are_listed(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    loaded = load([str(tmp_path / "*.json"), str(tmp_path / "empty")])
    assert loaded.documents == ()
    assert [u.reason for u in loaded.unreadable] == [
        "the pattern matches no file",
        "the folder has no .json files",
    ]


def test_size_is_capped_before_reading(tmp_path: Path) -> None:
    big = _write(tmp_path, "big.json", json.dumps(rd.document(0)) + " " * 5000)
    result = read_one(big, name="big", max_bytes=4096)
    assert isinstance(result, Unreadable)
    assert result.reason.startswith("larger than 4 KiB")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    result = read_one(fifo, name="pipe")
    assert result == Unreadable(str(fifo), "not a regular file")


def test_powershell_utf16_and_a_utf8_bom_are_read(tmp_path: Path) -> None:
    """Windows PowerShell 5's `>` writes UTF-16 LE with a BOM; Out-File -Encoding utf8 a UTF-8 BOM."""
    text = json.dumps(rd.document(1))
    utf16 = _write(tmp_path, "ps5.json", text.encode("utf-16"))
    bom = _write(tmp_path, "bom.json", b"\xef\xbb\xbf" + text.encode("utf-8"))
    binary = _write(tmp_path, "core.json", b"\xff\x00\xfe" * 10)
    assert isinstance(read_one(utf16, name="ps5"), MachineDoc)
    assert isinstance(read_one(bom, name="bom"), MachineDoc)
    garbage = read_one(binary, name="core")
    assert isinstance(garbage, Unreadable)
    assert garbage.reason.startswith("not UTF-8 text")


def test_the_same_stem_in_two_folders_names_both_machines_apart() -> None:
    names = machine_names([Path("rack1/node.json"), Path("rack2/node.json"), Path("rack2/other.json")])
    assert names == ["node (rack1)", "node (rack2)", "other"]


def test_the_file_count_is_bounded(tmp_path: Path) -> None:
    for i in range(5):
        _write(tmp_path, f"m{i}.json", json.dumps(copy.deepcopy(rd.document(0))))
    loaded = load([str(tmp_path)], max_files=3)
    assert len(loaded.documents) == 3
    assert loaded.unreadable == (Unreadable("2 more files", "not read: at most 3 per report"),)
