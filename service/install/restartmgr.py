"""Which processes hold given files open, the Windows way: the Restart Manager (rstrtmgr.dll).

Why not psutil there: `Process.open_files()` and `memory_maps()` cost about 235 ms per process on
Windows, overflow on mapped paths longer than 260 characters, and can hang (psutil #2932, #2934,
#1967). The Restart Manager answers "who holds these files?" for every process at once, the
question Windows Installer asks before replacing DLLs:

    RmStartSession(&session, 0, key)
    RmRegisterResources(session, n, files, 0, NULL, 0, NULL)
    RmGetList(session, &needed, &count, infos, &reasons)   # ERROR_MORE_DATA: grow and ask again
    RmEndSession(session)                                  # always, even after a failure

The calls go through `RmApi`, the four functions with ctypes' calling shapes: `WinDll` loads the
real ones; tests pass a fake that fills the same structures, so the call sequence and the struct
layout are checked on any OS. Pointers are passed with `ctypes.pointer` (not `byref`) so a Python
fake can write through them.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from torchdoctor.service.errors import TorchdoctorError

ERROR_SUCCESS: Final = 0
ERROR_MORE_DATA: Final = 234
CCH_RM_SESSION_KEY: Final = 32  # sizeof(GUID) * 2
CCH_RM_MAX_APP_NAME: Final = 255
CCH_RM_MAX_SVC_NAME: Final = 63
_MAX_TRIES: Final = 5  # processes may start between two RmGetList calls; grow and ask again

DWORD = ctypes.c_ulong
UINT = ctypes.c_uint


class FILETIME(ctypes.Structure):
    _fields_ = (("dwLowDateTime", DWORD), ("dwHighDateTime", DWORD))


class RM_UNIQUE_PROCESS(ctypes.Structure):
    _fields_ = (("dwProcessId", DWORD), ("ProcessStartTime", FILETIME))


class RM_PROCESS_INFO(ctypes.Structure):
    _fields_ = (
        ("Process", RM_UNIQUE_PROCESS),
        ("strAppName", ctypes.c_wchar * (CCH_RM_MAX_APP_NAME + 1)),
        ("strServiceShortName", ctypes.c_wchar * (CCH_RM_MAX_SVC_NAME + 1)),
        ("ApplicationType", ctypes.c_int),
        ("AppStatus", ctypes.c_ulong),
        ("TSSessionId", DWORD),
        ("bRestartable", ctypes.c_int),
    )


class RestartManagerError(TorchdoctorError):
    """The Restart Manager could not say who holds the files (exit 1)."""

    code = "restart-manager-failed"


class RmApi(Protocol):
    """rstrtmgr.dll's four functions, called as ctypes calls them. Each returns a Win32 error code."""

    def RmStartSession(
        self, session: ctypes._Pointer[ctypes.c_ulong], flags: int, key: ctypes.Array[ctypes.c_wchar]
    ) -> int: ...

    def RmRegisterResources(  # noqa: PLR0917 - the Windows signature, argument for argument
        self,
        session: int,
        n_files: int,
        files: ctypes.Array[ctypes.c_wchar_p],
        n_apps: int,
        apps: None,
        n_services: int,
        services: None,
    ) -> int: ...

    def RmGetList(
        self,
        session: int,
        needed: ctypes._Pointer[ctypes.c_uint],
        count: ctypes._Pointer[ctypes.c_uint],
        infos: ctypes.Array[RM_PROCESS_INFO] | None,
        reasons: ctypes._Pointer[ctypes.c_ulong],
    ) -> int: ...

    def RmEndSession(self, session: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    name: str  # the Restart Manager's application name ("Python", "Jupyter Notebook")
    started: int  # FILETIME as one number: a pid with another start time is another process


if sys.platform == "win32":

    def load_api() -> RmApi:
        """The real rstrtmgr.dll, with the argument types declared."""
        dll = ctypes.WinDLL("rstrtmgr", use_last_error=True)
        dll.RmStartSession.argtypes = (ctypes.POINTER(DWORD), DWORD, ctypes.c_wchar_p)
        dll.RmRegisterResources.argtypes = (
            DWORD,
            UINT,
            ctypes.POINTER(ctypes.c_wchar_p),
            UINT,
            ctypes.POINTER(RM_UNIQUE_PROCESS),
            UINT,
            ctypes.POINTER(ctypes.c_wchar_p),
        )
        dll.RmGetList.argtypes = (
            DWORD,
            ctypes.POINTER(UINT),
            ctypes.POINTER(UINT),
            ctypes.POINTER(RM_PROCESS_INFO),
            ctypes.POINTER(DWORD),
        )
        dll.RmEndSession.argtypes = (DWORD,)
        for function in (dll.RmStartSession, dll.RmRegisterResources, dll.RmGetList, dll.RmEndSession):
            function.restype = DWORD
        api: RmApi = dll
        return api

else:

    def load_api() -> RmApi:
        raise RestartManagerError("the Restart Manager exists only on Windows")


def _check(rc: int, what: str) -> None:
    if rc != ERROR_SUCCESS:
        raise RestartManagerError(
            f"the Windows Restart Manager failed in {what} (error {rc})",
            hint="close the programs that use this environment, then try again",
        )


def _holders(infos: Sequence[RM_PROCESS_INFO]) -> list[Holder]:
    found: dict[int, Holder] = {}
    for info in infos:
        start = info.Process.ProcessStartTime
        pid = int(info.Process.dwProcessId)
        started = (int(start.dwHighDateTime) << 32) | int(start.dwLowDateTime)
        found.setdefault(pid, Holder(pid, info.strAppName or f"process {pid}", started))
    return sorted(found.values(), key=lambda h: h.pid)


def holders_of(files: Sequence[str], api: RmApi | None = None) -> list[Holder]:
    """Every process that holds one of `files` open or loaded (DLLs, .pyd modules). Empty: nobody.

    Raises RestartManagerError when a call fails. The session is always ended.
    """
    if not files:
        return []
    rm = api if api is not None else load_api()
    session = DWORD(0)
    key = ctypes.create_unicode_buffer(CCH_RM_SESSION_KEY + 1)
    _check(rm.RmStartSession(ctypes.pointer(session), 0, key), "RmStartSession")
    try:
        names = (ctypes.c_wchar_p * len(files))(*files)
        _check(
            rm.RmRegisterResources(session.value, len(files), names, 0, None, 0, None),
            "RmRegisterResources",
        )
        capacity = 0
        for _ in range(_MAX_TRIES):
            needed, count, reasons = UINT(0), UINT(capacity), DWORD(0)
            infos = (RM_PROCESS_INFO * capacity)() if capacity else None
            rc = rm.RmGetList(
                session.value, ctypes.pointer(needed), ctypes.pointer(count), infos, ctypes.pointer(reasons)
            )
            if rc == ERROR_SUCCESS:
                return _holders(list(infos)[: count.value] if infos is not None else [])
            if rc != ERROR_MORE_DATA:
                _check(rc, "RmGetList")
            capacity = needed.value + 4  # room for a few that start meanwhile
        raise RestartManagerError("the list of processes kept growing while the Restart Manager read it")
    finally:
        rm.RmEndSession(session.value)
