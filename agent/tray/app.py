"""The tray: pystray's icon on the main thread, the check loop on a worker, jobs on their own.

Threads, and what each may do:
  - main: pystray's loop (Windows and GTK want it there); menu clicks arrive here and only
    dispatch: nothing slow ever runs on it;
  - the check loop (service/monitor/scheduler.py): every check cycle, one at a time;
  - one job thread at a time: a reinstall or a benchmark, as a child process (jobs.py);
  - the notifier's thread, and the single-instance door.
All of them change the `TrayView` under one lock and then re-render; rendering is the menu and
tooltip made by the pure functions in menu.py, and the icon drawn for the status.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchdoctor.agent.tray import menu as menus
from torchdoctor.agent.tray.details import write_details
from torchdoctor.agent.tray.icons import status_image
from torchdoctor.agent.tray.instance import Instance
from torchdoctor.agent.tray.jobs import JobOutcome, JobRequest, JobRunner
from torchdoctor.agent.tray.logs import log_file
from torchdoctor.agent.tray.menu import Action, ActionKind, Item, Job, JobKind, TrayView
from torchdoctor.agent.tray.notify import Notifier
from torchdoctor.agent.tray.opener import open_path
from torchdoctor.agent.tray.status import TrayStatus
from torchdoctor.service import paths
from torchdoctor.service.monitor.cycle import CycleOptions, run_cycle
from torchdoctor.service.monitor.scheduler import CheckLoop, Reason, Timing
from torchdoctor.service.monitor.state import MonitorState, env_folder, load_state

log = logging.getLogger("torchdoctor.tray")

# pystray has no type information; its objects pass through here untyped, under one name.
Pystray = Any
ICON_SIZE = 64
NO_MENU_MESSAGE = (
    "This desktop offers torchdoctor no tray menu (pystray fell back to its xorg backend). "
    "Clicking the icon opens the details; for the menu install PyGObject (see the README: "
    "`pip install torchdoctor[linux-tray]` or apt install python3-gi gir1.2-ayatanaappindicator3-0.1)."
)


@dataclass(frozen=True, slots=True)
class TrayOptions:
    cycle: CycleOptions
    timing: Timing


def _autostart_on() -> bool | None:
    try:
        from torchdoctor.agent.autostart import autostart_status  # noqa: PLC0415 - OS seam, read per menu

        return autostart_status().enabled
    except Exception as exc:  # the registry or a folder unreadable: the item shows disabled
        log.warning("could not read the autostart setting: %s", exc)
        return None


class TrayApp:
    def __init__(self, options: TrayOptions, instance: Instance) -> None:
        self.options = options
        self.instance = instance
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()
        loaded = load_state()
        if loaded.problem:
            log.warning("%s", loaded.problem)
        self._previous: MonitorState | None = loaded.state
        self._view = TrayView(state=loaded.state, checking=False, autostart=_autostart_on())
        self.loop = CheckLoop(self._check, options.timing)
        self._stop = threading.Event()
        self._runner: JobRunner | None = None
        self._job_thread: threading.Thread | None = None
        self._quitting = False
        self._icon: Pystray = None
        self._shown: TrayStatus | None = None
        self._latin1_titles = False
        self.notifier = Notifier(fallback=self._tray_notify)

    # --- the view -------------------------------------------------------------------------------

    @property
    def view(self) -> TrayView:
        with self._lock:
            return self._view

    def _update(self, **changes: object) -> None:
        with self._lock:
            self._view = dataclasses.replace(self._view, **changes)  # type: ignore[arg-type]
        self._render()

    def _render(self) -> None:
        icon = self._icon
        if icon is None:
            return
        # One of our threads at a time talks to pystray (its xorg backend calls Xlib from the
        # caller's thread), and the view is read inside the lock, so the last render shows the
        # newest view even when two threads change it at once.
        with self._render_lock:
            view = self.view
            status = menus.tray_status(view)
            try:
                if status is not self._shown:
                    icon.icon = status_image(status, ICON_SIZE)
                    self._shown = status
                    log.info("status: %s", status.value)
                icon.title = self._title(view)
                if icon.HAS_MENU:
                    icon.update_menu()
            except Exception:  # a tray host that went away must not kill the checks
                log.exception("updating the tray icon failed")

    # --- checks (the loop's thread) -------------------------------------------------------------

    def _check(self, reason: Reason) -> None:
        log.info("check (%s)", reason.value)
        self._update(checking=True)
        result = run_cycle(self.options.cycle, self._previous)
        self._previous = result.state
        self._update(state=result.state, checking=False, autostart=_autostart_on())
        for event in result.events:
            log.info("event: %s %s: %s -> %s", event.kind.value, event.subject, event.old, event.new)
        for line in result.decision.quiet:
            log.info("quiet: %s", line)
        for toast in result.decision.toasts:
            self.notifier.send(toast.title, toast.body)

    def check_now(self) -> None:
        if not self.loop.request_check():
            log.info("check now: coalesced with the check already running or asked for")

    # --- jobs -------------------------------------------------------------------------------------

    def _start_job(self, kind: JobKind, env_path: str) -> None:
        with self._lock:
            if self._runner is not None or self._quitting:
                return
            state = self._view.state
            env = state.environment(env_path) if state is not None else None
            if env is None:
                return
            if kind is JobKind.REINSTALL:
                if env.plan is None or env.plan.changes_nothing:
                    return
                label = f"torch {env.plan.torch}"
            else:
                label = f"torch {env.torch}" if env.torch else "torch"
            request = JobRequest(
                kind,
                env_path,
                label,
                hardware_file=self.options.cycle.hardware_file,
                index_base=self.options.cycle.index_base,
            )
            self._runner = JobRunner(request, on_progress=self._job_progress)
            self._view = dataclasses.replace(self._view, job=Job(kind, env_path, label))
            self._job_thread = threading.Thread(target=self._run_job, name="torchdoctor-job", daemon=True)
            self._job_thread.start()
        self._render()

    def _job_progress(self, text: str) -> None:
        with self._lock:
            job = self._view.job
            if job is None:
                return
            self._view = dataclasses.replace(self._view, job=dataclasses.replace(job, progress=text))
        self._render()

    def _run_job(self) -> None:
        runner = self._runner
        assert runner is not None  # noqa: S101 - set before the thread starts
        try:
            with self.loop.hold():
                result = runner.run()
        except Exception as exc:  # the child could not even start
            log.exception("the job failed to start")
            result = JobOutcome(False, False, 1, "Could not start the job", f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._runner = None
            self._view = dataclasses.replace(self._view, job=None)
            quitting = self._quitting
        self._render()
        self.notifier.send(result.title, result.body)
        if quitting:
            self._stop_icon()

    def cancel_job(self) -> None:
        with self._lock:
            runner = self._runner
            job = self._view.job
            if runner is None or job is None:
                return
            self._view = dataclasses.replace(self._view, job=dataclasses.replace(job, cancelling=True))
        self._render()
        runner.cancel()

    # --- menu actions (pystray's thread: dispatch only) -------------------------------------------

    def act(self, action: Action) -> None:
        log.info("menu: %s %s", action.kind.value, action.env or "")
        kind = action.kind
        if kind is ActionKind.CHECK_NOW:
            self.check_now()
        elif kind is ActionKind.REINSTALL and action.env:
            self._start_job(JobKind.REINSTALL, action.env)
        elif kind is ActionKind.BENCH and action.env:
            self._start_job(JobKind.BENCH, action.env)
        elif kind is ActionKind.CANCEL:
            self.cancel_job()
        elif kind is ActionKind.DETAILS:
            self._in_thread(lambda: self._open_details(action.env))
        elif kind is ActionKind.OPEN_FOLDER and action.env:
            # Never the interpreter itself (a free-threaded build's key): opening it would run it.
            self._in_thread(lambda: self._open(env_folder(action.env or "."), "the folder"))
        elif kind is ActionKind.OPEN_LOG:
            self._in_thread(lambda: self._open(log_file(), "the log"))
        elif kind is ActionKind.AUTOSTART:
            self._in_thread(self._toggle_autostart)
        elif kind is ActionKind.QUIT:
            self.quit()

    def _in_thread(self, work: Callable[[], object]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("a menu action failed")

        threading.Thread(target=run, daemon=True).start()

    def _open_details(self, env: str | None) -> None:
        self._open(write_details(paths.state_dir(), self.view.state, focus=env), "the details")

    def _open(self, path: Path, what: str) -> None:
        """Hand a file or folder to the desktop; where nothing can open it, say where it is."""
        if not open_path(path):
            self.notifier.send(f"Could not open {what}", f"Nothing on this desktop opens it; it is {path}")

    def _toggle_autostart(self) -> None:
        from torchdoctor.agent.autostart import (  # noqa: PLC0415 - OS seam
            autostart_status,
            disable_autostart,
            enable_autostart,
        )

        try:
            status = disable_autostart() if autostart_status().enabled else enable_autostart()
        except Exception as exc:
            log.warning("changing the autostart setting failed: %s", exc)
            self.notifier.send("Start at login could not be changed", str(exc))
            status = None
        self._update(autostart=status.enabled if status is not None else _autostart_on())

    def quit(self) -> None:
        """Quit; during a job, cancel it first and quit once the environment is restored."""
        with self._lock:
            self._quitting = True
            busy = self._runner is not None
        if busy:
            log.info("quit: cancelling the running job first")
            self.cancel_job()
            return
        self._stop_icon()

    def _stop_icon(self) -> None:
        self._stop.set()
        self.loop.wake()
        if self._icon is not None:
            self._icon.stop()

    # --- pystray ----------------------------------------------------------------------------------

    def _tray_notify(self, title: str, body: str) -> None:
        icon = self._icon
        if icon is None or not icon.HAS_NOTIFICATION:
            raise RuntimeError("this tray backend cannot show notifications")
        icon.notify(body, title)

    def _pystray_items(self, items: tuple[Item, ...]) -> list[Pystray]:
        import pystray  # noqa: PLC0415 - imported once the display is known to exist

        out: list[Pystray] = []
        for item in items:
            if item.is_separator:
                out.append(pystray.Menu.SEPARATOR)
            elif item.submenu is not None:
                out.append(pystray.MenuItem(item.text, pystray.Menu(*self._pystray_items(item.submenu))))
            else:
                out.append(
                    pystray.MenuItem(
                        item.text,
                        self._callback(item.action),
                        checked=(lambda _i, c=item.checked: c) if item.checked is not None else None,
                        default=item.default,
                        enabled=item.enabled,
                    )
                )
        return out

    def _callback(self, action: Action | None) -> Callable[..., None]:
        def clicked(*_args: object) -> None:
            if action is not None:
                self.act(action)

        return clicked

    def _menu(self) -> Pystray:
        import pystray  # noqa: PLC0415

        if not pystray.Icon.HAS_MENU:
            # No menu (xorg): a left click is all there is, and it opens the details.
            return pystray.Menu(
                pystray.MenuItem(
                    "Show details", self._callback(Action(ActionKind.DETAILS)), default=True, visible=False
                )
            )
        return pystray.Menu(lambda: self._pystray_items(menus.build_menu(self.view)))

    def _title(self, view: TrayView) -> str:
        text = menus.tooltip(view)
        if self._latin1_titles:
            # pystray's xorg backend writes the title as Latin-1 and raises on anything else.
            for fancy, plain in (("…", "..."), ("→", "->"), ("—", "-")):
                text = text.replace(fancy, plain)
            text = text.encode("latin-1", "replace").decode("latin-1")
        return text

    def _menu_opening(self) -> None:
        """Right before the menu shows (Windows): read "Start at login" back from the OS, since
        Task Manager may have turned it off since the last check."""
        with self._lock:
            self._view = dataclasses.replace(self._view, autostart=_autostart_on())

    def _setup(self, icon: Pystray) -> None:
        icon.visible = True
        self._render()
        threading.Thread(
            target=self.loop.run, args=(self._stop,), name="torchdoctor-checks", daemon=True
        ).start()
        self.instance.open_door(self.check_now)
        if not icon.HAS_MENU:
            log.warning("%s", NO_MENU_MESSAGE)
            self.notifier.send("torchdoctor has no tray menu here", NO_MENU_MESSAGE)

    def run(self) -> int:
        import pystray  # noqa: PLC0415

        backend = pystray.Icon.__module__.rsplit("._", 1)[-1]  # pystray._appindicator -> appindicator
        self._latin1_titles = backend == "xorg"
        log.info("tray starting (backend %s, check every %.0f s)", backend, self.options.timing.interval_s)
        view = self.view
        self._icon = _icon_class(pystray.Icon, self._menu_opening)(
            "torchdoctor",
            icon=status_image(menus.tray_status(view), ICON_SIZE),
            title=self._title(view),
            menu=self._menu(),
        )
        self._shown = menus.tray_status(view)
        try:
            self._icon.run(setup=self._setup)
        except Exception:
            # pystray's GTK backends raise on shutdown when no notification daemon runs (facts §1).
            log.exception("the tray loop ended with an error")
        finally:
            self._stop.set()
            self.loop.wake()
            self.notifier.close()
        log.info("tray stopped")
        return 0


_WM_RBUTTONUP = 0x0205


def _icon_class(base: Pystray, on_menu_open: Callable[[], None]) -> Pystray:
    """pystray's win32 icon builds its menu once; this one rebuilds it from a fresh view on every
    right-click, so the menu's check marks are read back from the OS each time it opens. Other
    backends keep their class (their menus are rebuilt at every check and every change)."""
    if not hasattr(base, "_on_notify"):
        return base

    class RefreshingIcon(base):  # type: ignore[misc]
        def _on_notify(self, wparam: int, lparam: int) -> None:
            if lparam == _WM_RBUTTONUP and self.HAS_MENU:
                try:
                    on_menu_open()
                    self._update_menu()
                except Exception:
                    log.exception("refreshing the menu failed")
            super()._on_notify(wparam, lparam)

    return RefreshingIcon
