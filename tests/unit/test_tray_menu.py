"""The tray's menu, tooltip and status as pure functions of what it knows."""

from __future__ import annotations

import dataclasses

import pytest

from torchdoctor.agent.tray.menu import (
    MAX_ENV_MENUS,
    TOOLTIP_MAX,
    Action,
    ActionKind,
    Item,
    Job,
    JobKind,
    TrayView,
    build_menu,
    human_bytes,
    reinstall_label,
    tooltip,
    tray_status,
)
from torchdoctor.agent.tray.status import TrayStatus
from torchdoctor.service.models import EnvStatus
from torchdoctor.service.monitor.state import (
    EnvState,
    FindingState,
    GpuState,
    HardwareState,
    MonitorState,
    PlanState,
)

HW = HardwareState("572.16", "12.8", (GpuState("NVIDIA GeForce RTX 5090", "12.0"),), "nvml")
PLAN = PlanState("2.7.1+cu128", "cu128", "https://x/cu128", ("torch==2.7.1+cu128",), 2_431_000_000)


def env(
    path: str,
    status: EnvStatus = EnvStatus.OK,
    plan: PlanState | None = None,
    torch: str | None = "2.7.1+cu128",
) -> EnvState:
    findings: tuple[FindingState, ...] = ()
    if status is EnvStatus.BROKEN:
        findings = (
            FindingState(
                "gpu-arch-unsupported", "error", "torch 2.5.1+cu118 has no kernels for sm_120.", "x"
            ),
        )
    if status is EnvStatus.WARN:
        findings = (
            FindingState(
                "driver-minor-compat", "warn", "runs through CUDA minor-version compatibility.", "x"
            ),
        )
    return EnvState(path, f"{path}/bin/python", "3.12.4", "venv", torch, None, None, status, findings, plan)


def view(*envs: EnvState, **kwargs: object) -> TrayView:
    state = MonitorState("2026-12-01T10:00:00Z", HW, envs)
    return TrayView(state=state, **kwargs)  # type: ignore[arg-type]


def texts(items: tuple[Item, ...]) -> list[str]:
    return [i.text for i in items]


def find(items: tuple[Item, ...], text: str) -> Item:
    return next(i for i in items if i.text == text)


@pytest.mark.parametrize(
    ("the_view", "status"),
    [
        (TrayView(state=None), TrayStatus.CHECKING),
        (view(env("/a")), TrayStatus.OK),
        (view(env("/a"), env("/b", EnvStatus.WARN)), TrayStatus.ATTENTION),
        (view(env("/a", EnvStatus.WARN), env("/b", EnvStatus.BROKEN)), TrayStatus.BROKEN),
        (view(env("/a", EnvStatus.BROKEN), checking=True), TrayStatus.CHECKING),
        (view(env("/a"), job=Job(JobKind.REINSTALL, "/a", "torch x")), TrayStatus.WORKING),
        (
            TrayView(
                state=MonitorState("t", HardwareState(None, None, (), "none"), (env("/a", torch=None),))
            ),
            TrayStatus.NO_DRIVER,
        ),
        (TrayView(state=MonitorState("t", HW, (env("/a"),), error="hw.json: not JSON")), TrayStatus.ERROR),
    ],
)
def test_the_status_follows_the_state(the_view: TrayView, status: TrayStatus) -> None:
    assert tray_status(the_view) is status


def test_the_menu_has_the_status_line_check_now_one_submenu_per_environment_and_the_rest() -> None:
    items = build_menu(view(env("/w/a/.venv"), env("/w/b/.venv", EnvStatus.BROKEN, PLAN), autostart=True))
    assert texts(items) == [
        "1 of 2 environments is broken on this machine",
        "Check now",
        "-",
        "a/.venv: fits",
        "b/.venv: broken",
        "-",
        "Show details",
        "Start at login",
        "Open log",
        "Quit",
    ]
    assert items[0].enabled is False and items[1].default is True
    assert find(items, "Start at login").checked is True


def test_an_environment_submenu_offers_exactly_what_one_click_installs() -> None:
    broken = env("/w/b/.venv", EnvStatus.BROKEN, PLAN)
    sub = find(build_menu(view(broken)), "b/.venv: broken").submenu
    assert sub is not None
    assert texts(sub) == [
        "torch 2.5.1+cu118 has no kernels for sm_120.",
        "Reinstall torch 2.7.1+cu128 (2.4 GB)",
        "Run GPU benchmark",
        "Show details",
        "Open folder",
    ]
    assert sub[0].enabled is False
    assert sub[1].action == Action(ActionKind.REINSTALL, "/w/b/.venv") and sub[1].enabled


def test_no_plan_means_no_reinstall_but_a_reason() -> None:
    broken = dataclasses.replace(
        env("/w/b/.venv", EnvStatus.BROKEN), plan_problem="the index could not be reached"
    )
    sub = find(build_menu(view(broken)), "b/.venv: broken").submenu
    assert sub is not None
    assert not any(i.action and i.action.kind is ActionKind.REINSTALL for i in sub)
    assert "No reinstall on offer: the index could not be reached" in texts(sub)


def test_a_plan_that_changes_nothing_is_not_offered() -> None:
    assert reinstall_label(env("/a", EnvStatus.WARN, dataclasses.replace(PLAN, changes_nothing=True))) is None
    assert (
        reinstall_label(env("/a", EnvStatus.WARN, dataclasses.replace(PLAN, download_bytes=None)))
        == "Reinstall torch 2.7.1+cu128"
    )


def test_while_a_job_runs_its_progress_shows_cancel_is_offered_and_long_actions_wait() -> None:
    job = Job(JobKind.REINSTALL, "/w/b/.venv", "torch 2.7.1+cu128", progress="downloaded 40% of 2.4 GB")
    items = build_menu(view(env("/w/a/.venv"), env("/w/b/.venv", EnvStatus.BROKEN, PLAN), job=job))
    assert texts(items)[1:4] == [
        "Reinstalling torch 2.7.1+cu128 in b/.venv: downloaded 40% of 2.4 GB",
        "Cancel",
        "Check now",
    ]
    assert find(items, "Cancel").action == Action(ActionKind.CANCEL)
    assert find(items, "Check now").enabled is False
    sub = find(items, "b/.venv: broken").submenu
    assert sub is not None and not find(sub, "Reinstall torch 2.7.1+cu128 (2.4 GB)").enabled
    assert not find(sub, "Run GPU benchmark").enabled
    assert find(sub, "Show details").enabled  # reading is never blocked
    assert items[-1].text == "Cancel and quit"
    assert "Reinstalling torch 2.7.1+cu128 in b/.venv: downloaded 40%" in tooltip(view(job=job))


def test_cancelling_says_so_and_cannot_be_pressed_twice() -> None:
    job = Job(JobKind.REINSTALL, "/w/b/.venv", "torch x", cancelling=True)
    items = build_menu(view(job=job))
    assert "Cancelling; restoring b/.venv…" in texts(items)
    assert find(items, "Cancel").enabled is False


def test_at_most_fifteen_environment_menus_then_a_more_item() -> None:
    envs = [env(f"/w/p{i:02}/.venv") for i in range(MAX_ENV_MENUS + 4)]
    items = build_menu(view(*envs))
    env_items = [i for i in items if i.submenu is not None]
    assert len(env_items) == MAX_ENV_MENUS
    more = find(items, "… 4 more")
    assert more.action == Action(ActionKind.DETAILS)


def test_checking_disables_check_now() -> None:
    items = build_menu(view(env("/a"), checking=True))
    assert find(items, "Checking…").enabled is False
    assert find(build_menu(TrayView(state=None)), "Checking…").enabled is False


def test_an_unreadable_autostart_setting_is_shown_disabled_not_as_off() -> None:
    item = find(build_menu(view(env("/a"), autostart=None)), "Start at login")
    assert item.enabled is False


def test_the_tooltip_fits_windows_limit_and_says_the_driver_and_the_quiet_note() -> None:
    state = MonitorState(
        "t", HW, (env("/a"),), notes=("NVIDIA driver 566.36 → 572.16; every environment still fits.",)
    )
    text = tooltip(TrayView(state=state))
    assert text.startswith(
        "torchdoctor: The environment fits this machine · NVIDIA 572.16 · NVIDIA driver 566.36"
    )
    assert len(text) <= TOOLTIP_MAX
    long = TrayView(state=MonitorState("t", HW, (), error="x" * 500))
    assert len(tooltip(long)) == TOOLTIP_MAX and tooltip(long).endswith("…")


def test_one_environment_is_named_not_counted() -> None:
    assert (
        build_menu(view(env("/w/b/.venv", EnvStatus.BROKEN)))[0].text == "b/.venv is broken on this machine"
    )
    assert build_menu(view(env("/w/b/.venv", EnvStatus.WARN)))[0].text == "b/.venv needs attention"


def test_an_error_state_says_why_in_the_status_line() -> None:
    items = build_menu(TrayView(state=MonitorState("t", HW, (env("/a"),), error="hw.json is not JSON")))
    assert items[0].text == "The last check failed: hw.json is not JSON"


@pytest.mark.parametrize(
    ("size", "words"),
    [(999, "999 B"), (2_431_000_000, "2.4 GB"), (15_300_000, "15 MB"), (1_500_000, "1.5 MB")],
)
def test_sizes_read_like_a_download_dialog(size: int, words: str) -> None:
    assert human_bytes(size) == words


def test_on_windows_the_menu_is_rebuilt_from_a_fresh_read_at_every_right_click() -> None:
    from torchdoctor.agent.tray.app import _icon_class

    calls: list[str] = []

    class Win32Icon:  # the shape of pystray._win32.Icon that the hook relies on
        HAS_MENU = True

        def _on_notify(self, wparam: int, lparam: int) -> None:
            calls.append(f"pystray:{lparam:#x}")

        def _update_menu(self) -> None:
            calls.append("rebuild")

    class XorgIcon:
        HAS_MENU = False

    icon = _icon_class(Win32Icon, lambda: calls.append("read autostart"))()
    icon._on_notify(0, 0x0205)  # WM_RBUTTONUP: the menu is about to open
    icon._on_notify(0, 0x0202)  # WM_LBUTTONUP: no menu
    assert calls == ["read autostart", "rebuild", "pystray:0x205", "pystray:0x202"]
    assert _icon_class(XorgIcon, lambda: None) is XorgIcon
