"""The Restart Manager wrapper against a fake rstrtmgr.dll: the call sequence, the structures, the
ERROR_MORE_DATA retry and the session always ended. The real DLL is exercised only on Windows."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from torchdoctor.service.install.restartmgr import (
    CCH_RM_SESSION_KEY,
    ERROR_MORE_DATA,
    ERROR_SUCCESS,
    RM_PROCESS_INFO,
    Holder,
    RestartManagerError,
    holders_of,
    load_api,
)

ERROR_ACCESS_DENIED = 5
SESSION = 7


@dataclass
class App:
    pid: int
    name: str
    start: int  # FILETIME as one 64-bit number


@dataclass
class FakeRm:
    """Behaves as rstrtmgr.dll does for the calls we make; records them."""

    apps: list[App]
    grow_by: int = 0  # processes that appear between the size query and the real one
    register_rc: int = ERROR_SUCCESS
    calls: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def RmStartSession(
        self, session: ctypes._Pointer[ctypes.c_ulong], flags: int, key: ctypes.Array[ctypes.c_wchar]
    ) -> int:
        self.calls.append("start")
        assert flags == 0 and len(key) == CCH_RM_SESSION_KEY + 1
        session.contents.value = SESSION
        key.value = "0" * CCH_RM_SESSION_KEY
        return ERROR_SUCCESS

    def RmRegisterResources(
        self,
        session: int,
        n_files: int,
        files: ctypes.Array[ctypes.c_wchar_p],
        n_apps: int,
        apps: None,
        n_services: int,
        services: None,
    ) -> int:
        self.calls.append("register")
        assert session == SESSION and (n_apps, apps, n_services, services) == (0, None, 0, None)
        self.files = [files[i] or "" for i in range(n_files)]
        return self.register_rc

    def RmGetList(
        self,
        session: int,
        needed: ctypes._Pointer[ctypes.c_uint],
        count: ctypes._Pointer[ctypes.c_uint],
        infos: ctypes.Array[RM_PROCESS_INFO] | None,
        reasons: ctypes._Pointer[ctypes.c_ulong],
    ) -> int:
        self.calls.append(f"list({count.contents.value})")
        assert session == SESSION
        if self.grow_by:
            self.apps.append(App(9000 + self.grow_by, "Late", 1))
            self.grow_by -= 1
        needed.contents.value = len(self.apps)
        reasons.contents.value = 0
        if count.contents.value < len(self.apps):
            return ERROR_MORE_DATA
        assert (infos is None) == (count.contents.value == 0)
        for slot, app in zip(infos or (), self.apps, strict=False):
            slot.Process.dwProcessId = app.pid
            slot.Process.ProcessStartTime.dwLowDateTime = app.start & 0xFFFFFFFF
            slot.Process.ProcessStartTime.dwHighDateTime = app.start >> 32
            slot.strAppName = app.name
        count.contents.value = len(self.apps)
        return ERROR_SUCCESS

    def RmEndSession(self, session: int) -> int:
        self.calls.append("end")
        assert session == SESSION
        return ERROR_SUCCESS


FILES: Sequence[str] = (
    r"C:\env\Lib\site-packages\torch\lib\torch_cpu.dll",
    r"C:\env\Lib\site-packages\x.pyd",
)


def test_the_holders_are_read_after_asking_how_many_there_are() -> None:
    rm = FakeRm([App(4242, "Python", (0x01DB << 32) | 5), App(77, "Jupyter Notebook", 9)])
    assert holders_of(FILES, rm) == [
        Holder(77, "Jupyter Notebook", 9),
        Holder(4242, "Python", (0x01DB << 32) | 5),
    ]
    assert rm.calls == ["start", "register", "list(0)", "list(6)", "end"]
    assert rm.files == list(FILES)


def test_nobody_holding_the_files_is_an_empty_list() -> None:
    rm = FakeRm([])
    assert holders_of(FILES, rm) == []
    assert rm.calls == ["start", "register", "list(0)", "end"]


def test_processes_appearing_meanwhile_make_it_ask_again() -> None:
    rm = FakeRm([App(1, "A", 1)], grow_by=8)
    found = holders_of(FILES, rm)
    assert {h.pid for h in found} >= {1}
    assert rm.calls[-1] == "end" and rm.calls.count("start") == 1


def test_a_failed_call_is_one_error_and_the_session_still_ends() -> None:
    rm = FakeRm([App(1, "A", 1)], register_rc=ERROR_ACCESS_DENIED)
    with pytest.raises(RestartManagerError, match=r"RmRegisterResources \(error 5\)"):
        holders_of(FILES, rm)
    assert rm.calls == ["start", "register", "end"]


def test_no_files_means_no_session() -> None:
    rm = FakeRm([])
    assert holders_of([], rm) == []
    assert rm.calls == []


def test_the_structure_matches_the_windows_sdk() -> None:
    # typedef struct { RM_UNIQUE_PROCESS Process; WCHAR strAppName[CCH_RM_MAX_APP_NAME+1];
    #   WCHAR strServiceShortName[CCH_RM_MAX_SVC_NAME+1]; RM_APP_TYPE ApplicationType; ULONG AppStatus;
    #   DWORD TSSessionId; BOOL bRestartable; } RM_PROCESS_INFO;   (restartmanager.h)
    wchar = ctypes.sizeof(ctypes.c_wchar)
    assert [name for name, _ in RM_PROCESS_INFO._fields_] == [
        "Process",
        "strAppName",
        "strServiceShortName",
        "ApplicationType",
        "AppStatus",
        "TSSessionId",
        "bRestartable",
    ]
    app_name = RM_PROCESS_INFO.strAppName
    service = RM_PROCESS_INFO.strServiceShortName
    assert app_name.size == 256 * wchar and service.size == 64 * wchar
    assert service.offset == app_name.offset + 256 * wchar
    if sys.platform == "win32":  # DWORD and WCHAR have their Windows sizes only there
        assert ctypes.sizeof(RM_PROCESS_INFO) == 12 + 512 + 128 + 16


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows only")
def test_off_windows_there_is_no_restart_manager() -> None:
    with pytest.raises(RestartManagerError):
        load_api()


@pytest.mark.windows
@pytest.mark.skipif(sys.platform != "win32", reason="needs Windows: the real rstrtmgr.dll")
def test_the_real_restart_manager_names_a_python_holding_a_pyd() -> None:
    import _ctypes  # an extension module (a .pyd) this interpreter has loaded

    path = getattr(_ctypes, "__file__", None)
    assert path is not None
    assert os.getpid() in [h.pid for h in holders_of([path])]
