"""How `fix` and `bench` behave when the tray runs them (the hidden `--tray-child` option).

The tray starts them as child processes so that a reinstall can be cancelled exactly the way
Ctrl-C cancels it in a terminal, and so that the tray stays small. Cancelling is the tray closing
the child's stdin: one mechanism on every OS (Windows has no SIGINT to send to a windowless child),
and a tray that dies mid-reinstall cancels it too, so the environment is restored rather than
left to finish unwatched.
"""

from __future__ import annotations

import _thread
import argparse
import os
import signal
import sys
import threading


def add_tray_child_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tray-child", action="store_true", help=argparse.SUPPRESS)


def cancel_on_stdin_eof() -> None:
    """Raise KeyboardInterrupt in the main thread, as Ctrl-C would, once stdin is closed."""
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
    except (OSError, ValueError):
        fd = -1
    if fd < 0:
        return

    def watch() -> None:
        # os.read on the descriptor, not sys.stdin.buffer: a daemon thread blocked inside the
        # buffered reader holds its lock, and the interpreter aborts at exit (SIGABRT) on it.
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        if hasattr(signal, "pthread_kill"):
            # A real SIGINT to the main thread: it also breaks a select() or wait that
            # interrupt_main() alone would leave blocked until its timeout (a 180 s verification).
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        else:
            _thread.interrupt_main()

    threading.Thread(target=watch, name="torchdoctor-cancel-watch", daemon=True).start()
