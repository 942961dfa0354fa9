"""Check cycles for real: a real venv with stand-in torch wheels, a real local index, a hardware
file rewritten between cycles the way a driver update changes the machine."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer, publish
from tests.support.scenarios import NEW_DRIVER, OLD_DRIVER, family
from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.cycle import CycleOptions, run_cycle
from torchdoctor.service.monitor.events import EventKind
from torchdoctor.service.monitor.state import load_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("index")
    for variant in ("cpu", "cu118", "cu126", "cu128"):
        publish(root, family(variant), variant)
    with IndexServer(root) as server:
        yield server


def write(path: Path, hardware: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(hardware))
    return path


def test_a_driver_rollback_breaks_an_environment_and_offers_the_repair(
    tmp_path: Path, index: IndexServer, td_dirs: dict[str, Path]
) -> None:
    env = make_venv(tmp_path / "proj" / ".venv")
    install_standins(env, family("cu128"))
    hw = write(tmp_path / "hw.json", NEW_DRIVER)
    options = CycleOptions(hardware_file=hw, env_paths=(env.root,), discover=False, index_base=index.url)

    first = run_cycle(options, None)
    assert first.state.error is None and first.saved
    (fits,) = first.state.environments
    assert fits.status is EnvStatus.OK and fits.torch == "2.7.1+cu128" and fits.plan is None
    assert first.decision.toasts == ()  # first start, nothing broken: silent
    assert load_state().state == first.state  # remembered in the state folder

    second = run_cycle(options, first.state)
    assert second.events == () and second.decision.toasts == ()  # nothing changed: nothing said

    write(hw, OLD_DRIVER)  # the driver was rolled back to CUDA 11.8: no CUDA 12 build runs on it
    third = run_cycle(options, load_state().state)
    (broken,) = third.state.environments
    assert broken.status is EnvStatus.BROKEN
    assert broken.findings[0].code == "driver-too-old"
    assert broken.plan is not None and broken.plan.torch == "2.7.1+cu118"
    assert broken.plan.requirements == ("torch==2.7.1+cu118", "torchvision==0.22.1+cu118")
    assert broken.plan.download_bytes and broken.plan.download_bytes > 0
    kinds = {e.kind for e in third.events}
    assert kinds == {EventKind.DRIVER_CHANGED, EventKind.VERDICT_WORSENED}
    (toast,) = third.decision.toasts
    assert toast.title == "NVIDIA driver 572.16 → 520.61.05: 1 environment no longer fits"
    assert "proj/.venv" in toast.body and "reinstall" in toast.body

    requests_before = len(index.requests)
    fourth = run_cycle(options, third.state)
    assert fourth.state.environments[0].plan == broken.plan  # reused: same build, same hardware
    assert len(index.requests) == requests_before  # and the index was not asked again
    assert fourth.decision.toasts == ()  # still broken: already said


def test_a_check_that_fails_keeps_the_last_good_state_and_the_next_one_recovers(
    tmp_path: Path, index: IndexServer, td_dirs: dict[str, Path]
) -> None:
    env = make_venv(tmp_path / "venv")
    install_standins(env, family("cu128"))
    hw = write(tmp_path / "hw.json", NEW_DRIVER)
    options = CycleOptions(hardware_file=hw, env_paths=(env.root,), discover=False, index_base=index.url)
    good = run_cycle(options, None)

    hw.write_text("{ half a file")  # a hardware file being rewritten, or a broken probe
    failed = run_cycle(options, good.state)
    assert failed.state.error is not None and "hw.json" in failed.state.error
    assert failed.state.environments == good.state.environments  # nothing "vanished"
    assert failed.events == () and failed.decision.toasts == ()

    write(hw, NEW_DRIVER)
    recovered = run_cycle(options, failed.state)
    assert recovered.state.error is None
    assert recovered.events == () and recovered.decision.toasts == ()  # nothing changed meanwhile


def test_an_internal_error_leaves_a_crash_log(
    tmp_path: Path, td_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchdoctor.service.monitor import cycle

    def bug(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(cycle, "load_knowledge", bug)
    result = run_cycle(CycleOptions(discover=False), None)
    assert result.state.error is not None
    assert result.state.error.startswith("internal error: ZeroDivisionError: a bug of ours (details: ")
    (crash,) = td_dirs["log"].glob("crash-check-*.log")
    assert "ZeroDivisionError" in crash.read_text() and "Traceback" in crash.read_text()


def test_a_missing_env_path_is_a_note_not_a_failed_check(
    tmp_path: Path, index: IndexServer, td_dirs: dict[str, Path]
) -> None:
    hw = write(tmp_path / "hw.json", NEW_DRIVER)
    options = CycleOptions(
        hardware_file=hw, env_paths=(tmp_path / "gone",), discover=False, index_base=index.url
    )
    result = run_cycle(options, None)
    assert result.state.error is None
    assert any("gone" in note for note in result.state.notes)


def test_an_unwritable_state_folder_does_not_fail_the_check(
    tmp_path: Path, index: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TORCHDOCTOR_STATE_DIR", str(blocker / "state"))  # mkdir fails: a file is in the way
    hw = write(tmp_path / "hw.json", NEW_DRIVER)
    result = run_cycle(CycleOptions(hardware_file=hw, discover=False, index_base=index.url), None)
    assert result.state.error is None and result.saved is False
