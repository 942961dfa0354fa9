from pathlib import Path

import pytest

from torchdoctor.service.models import (
    ComputeCapability,
    EnvStatus,
    Finding,
    FindingCode,
    Severity,
    TorchBuild,
    env_status,
)


@pytest.mark.parametrize(("text", "sm"), [("8.6", 86), ("12.0", 120), (" 7.5 ", 75), ("10.3", 103)])
def test_compute_capability_round_trips(text: str, sm: int) -> None:
    cc = ComputeCapability.parse(text)
    assert cc.sm == sm
    assert ComputeCapability.from_sm(sm) == cc
    assert str(cc) == text.strip()


@pytest.mark.parametrize("text", ["", "8", "sm_86", "8.6.1", "x.y", "-1.0"])
def test_compute_capability_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a compute capability"):
        ComputeCapability.parse(text)


def test_compute_capabilities_order_numerically_not_as_text() -> None:
    assert ComputeCapability.parse("12.0") > ComputeCapability.parse("9.0")
    assert ComputeCapability.parse("8.9") > ComputeCapability.parse("8.6")


def _build() -> TorchBuild:
    return TorchBuild(version="2.7.1+cu128", variant="cu128", cuda="12.8")


def test_status_follows_the_worst_severity_and_info_does_not_lower_it() -> None:
    info = Finding(FindingCode.NEWER_VARIANT_AVAILABLE, "m", "f")
    warn = Finding(FindingCode.DRIVER_MINOR_COMPAT, "m", "f")
    err = Finding(FindingCode.DRIVER_TOO_OLD, "m", "f")
    assert info.severity is Severity.INFO
    assert env_status(_build(), (info,)) is EnvStatus.OK
    assert env_status(_build(), (info, warn)) is EnvStatus.WARN
    assert env_status(_build(), (warn, err)) is EnvStatus.BROKEN
    assert env_status(None, ()) is EnvStatus.NO_TORCH


def test_release_drops_the_local_label() -> None:
    assert _build().release == "2.7.1"
    assert TorchBuild(version=None, variant=None, cuda=None).release is None


def test_an_internal_error_is_one_line_and_a_crash_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], td_dirs: dict[str, Path]
) -> None:
    from torchdoctor.agent import cli
    from torchdoctor.agent.commands import hardware

    def boom(_args: object) -> int:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(hardware, "run", boom)
    assert cli.main(["hardware"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: a bug of ours" in err
    (log,) = td_dirs["log"].glob("crash-*.log")
    assert "Traceback" in log.read_text()
