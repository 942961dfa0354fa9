"""An in-memory registry with the surface and the errors of the stdlib `winreg` module.

It behaves as winreg does where our code could get it wrong: a missing key or value raises
FileNotFoundError, a denied key PermissionError (access denied is winerror 5), a handle opened for
reading refuses writes, REG_SZ takes only str and REG_BINARY only bytes, and keys and value names
compare case-insensitively. Every handle must be closed: `open_handles` counts the ones left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

HKEY_CURRENT_USER: Final = 0x80000001
KEY_QUERY_VALUE: Final = 0x0001
KEY_SET_VALUE: Final = 0x0002
KEY_READ: Final = 0x20019
REG_SZ: Final = 1
REG_BINARY: Final = 3


@dataclass
class FakeHandle:
    hive: int
    key: str  # case-folded
    access: int
    closed: bool = False


def _missing() -> FileNotFoundError:
    return FileNotFoundError(2, "The system cannot find the file specified")


def _denied() -> PermissionError:
    return PermissionError(13, "Access is denied")


@dataclass
class FakeWinreg:
    """Pass an instance where the code takes a winreg-shaped module."""

    HKEY_CURRENT_USER: int = HKEY_CURRENT_USER
    KEY_READ: int = KEY_READ
    KEY_SET_VALUE: int = KEY_SET_VALUE
    REG_SZ: int = REG_SZ
    REG_BINARY: int = REG_BINARY

    # (hive, case-folded key) -> {case-folded value name: (data, type)}
    keys: dict[tuple[int, str], dict[str, tuple[object, int]]] = field(default_factory=dict)
    denied: set[tuple[int, str]] = field(default_factory=set)
    read_only: set[tuple[int, str]] = field(default_factory=set)
    handles: list[FakeHandle] = field(default_factory=list)

    # --- test helpers -----------------------------------------------------------------------------

    def set_value(self, key: str, name: str, data: object, kind: int, hive: int = HKEY_CURRENT_USER) -> None:
        """What another program (Task Manager, an installer) writes."""
        self.keys.setdefault((hive, key.casefold()), {})[name.casefold()] = (data, kind)

    def get(self, key: str, name: str, hive: int = HKEY_CURRENT_USER) -> tuple[object, int] | None:
        return self.keys.get((hive, key.casefold()), {}).get(name.casefold())

    def deny(self, key: str, hive: int = HKEY_CURRENT_USER) -> None:
        """Any access to the key is denied (a policy, a security tool)."""
        self.denied.add((hive, key.casefold()))

    def make_read_only(self, key: str, hive: int = HKEY_CURRENT_USER) -> None:
        """The key can be read, but opening it for writing is denied."""
        self.read_only.add((hive, key.casefold()))

    @property
    def open_handles(self) -> int:
        return sum(not h.closed for h in self.handles)

    # --- winreg's API -----------------------------------------------------------------------------

    def _handle(self, hive: int, sub_key: str, access: int, *, create: bool) -> FakeHandle:
        key = sub_key.casefold()
        if (hive, key) in self.denied:
            raise _denied()
        if access & KEY_SET_VALUE and (hive, key) in self.read_only:
            raise _denied()
        if (hive, key) not in self.keys:
            if not create:
                raise _missing()
            self.keys[(hive, key)] = {}
        handle = FakeHandle(hive, key, access)
        self.handles.append(handle)
        return handle

    def _check(self, handle: FakeHandle, need: int) -> dict[str, tuple[object, int]]:
        if handle.closed:
            raise OSError(6, "The handle is invalid")
        if not handle.access & need:
            raise _denied()
        return self.keys[(handle.hive, handle.key)]

    def OpenKey(self, key: int, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> FakeHandle:
        return self._handle(key, sub_key, access, create=False)

    def CreateKeyEx(self, key: int, sub_key: str, reserved: int = 0, access: int = 0x20006) -> FakeHandle:
        return self._handle(key, sub_key, access, create=True)

    def QueryValueEx(self, key: FakeHandle, name: str, /) -> tuple[object, int]:
        values = self._check(key, KEY_QUERY_VALUE)
        if name.casefold() not in values:
            raise _missing()
        return values[name.casefold()]

    def SetValueEx(self, key: FakeHandle, name: str, reserved: int, type: int, value: object, /) -> None:
        values = self._check(key, KEY_SET_VALUE)
        if type == REG_SZ and not isinstance(value, str):
            raise ValueError("Could not convert the data to the specified type.")
        if type == REG_BINARY and not isinstance(value, bytes | bytearray):
            kind = value.__class__.__name__
            raise TypeError(f"Objects of type '{kind}' can not be used as binary registry values")
        values[name.casefold()] = (value, type)

    def DeleteValue(self, key: FakeHandle, value: str, /) -> None:
        values = self._check(key, KEY_SET_VALUE)
        if value.casefold() not in values:
            raise _missing()
        del values[value.casefold()]

    def CloseKey(self, key: FakeHandle, /) -> None:
        key.closed = True
