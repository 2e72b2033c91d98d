"""What a command does when SIGINT or SIGTERM stops it.

The first signal raises `Interrupted` in the main thread, which unwinds through Ray and Tune (their
cleanup stops the trials) to the CLI, which shuts Ray down and exits 130 or 143. Library cleanup can
take long on a loaded machine, so a watchdog ends the process after `GRACE_S` whatever it is doing;
the work a stop must not lose (a sweep's partial report) is registered with `on_stop` and runs once,
on whichever path comes first; what must end before the command's processes are stopped (a driver relaying
its workers' output, which would then print their dying words) is registered with `at_end` and runs at the
first signal or once the command's work returns (`ending`). A second signal ends the process at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import Interrupted

GRACE_S = 10.0
MESSAGE = "deepmimic: interrupted: rerun the same command to resume"
_finishers: list[Callable[[], None]] = []
_at_end: list[Callable[[], None]] = []
_lock = threading.Lock()
_stopping = threading.Event()


@contextlib.contextmanager
def on_stop(finish: Callable[[], None]) -> Iterator[None]:
    """Run `finish` (once) if the command is stopped while inside this block."""
    _finishers.append(finish)
    try:
        yield
    finally:
        _finishers.remove(finish)


def finish() -> None:
    """Run the registered finishers, each once, whichever thread asks first."""
    with _lock:
        while _finishers:
            _finishers.pop()()


def at_end(hook: Callable[[], None]) -> None:
    """Run `hook` when the command begins to end, before its processes are stopped (once registered, for good)."""
    if hook not in _at_end:
        _at_end.append(hook)


def ending() -> None:
    """The command begins to end (its first signal, or its work returned): the `at_end` hooks, each whatever
    another raises."""
    for hook in _at_end:
        with contextlib.suppress(Exception):
            hook()


def install() -> None:
    """SIGINT and SIGTERM stop the command (see the module's docstring)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: object) -> None:
    if _stopping.is_set():
        _end(signum)
    _stopping.set()
    ending()
    threading.Thread(target=_watchdog, args=(signum,), daemon=True).start()
    raise Interrupted(signum)


def _watchdog(signum: int) -> None:
    time.sleep(GRACE_S)  # a command that stopped in time has exited, this daemon thread with it
    try:
        finish()
    finally:
        _end(signum)


def _end(signum: int) -> None:
    """Kill every process this command started (a local Ray's daemons and workers, read from /proc;
    elsewhere nothing) and exit now: `ray.shutdown` would wait."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    todo = [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    print(MESSAGE, file=sys.stderr, flush=True)
    os._exit(128 + signum)
