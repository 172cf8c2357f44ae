"""Who owns a temporary directory, so that what a killed process left can be removed safely.

A builder writes :data:`OWNER_FILE` into each temporary directory it creates: host name, boot
id, process id and the process's start time. A later build removes a leftover directory only when
that owner is certainly gone: same host, and either another boot, or no process with that pid,
or a process with that pid that started at another time (the pid was reused). A directory
without an owner file, or owned on another host (a shared filesystem), is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

OWNER_FILE = ".discoseq-owner.json"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def me() -> dict[str, object]:
    """This process, as recorded in an owner file."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid": pid,
        "start": _start_time(pid),
    }


def claim(directory: Path) -> None:
    """Record this process as the owner of ``directory``."""
    (directory / OWNER_FILE).write_text(json.dumps(me()))


def release(directory: Path) -> None:
    """Remove the owner file (before ``directory`` becomes a finished index)."""
    (directory / OWNER_FILE).unlink(missing_ok=True)


def owner_is_gone(directory: Path) -> bool:
    """True only when the process recorded in ``directory`` certainly no longer runs."""
    try:
        owner = json.loads((directory / OWNER_FILE).read_text())
        host, boot, pid, start = owner["host"], owner["boot_id"], owner["pid"], owner["start"]
    except (OSError, ValueError, TypeError, KeyError):
        return False  # no owner file (being created, or not ours): leave it
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    if boot is not None and _boot_id() not in (None, boot):
        return True  # the machine restarted since
    if not _exists(pid):
        return True
    now = _start_time(pid)
    return start is not None and now is not None and now != start


def remove_abandoned(parent: Path, pattern: str) -> list[Path]:
    """Remove the directories ``parent/pattern`` (a glob) whose owner is gone; returns them.
    Never raises: cleaning up is a courtesy, not a reason to fail."""
    removed: list[Path] = []
    try:
        candidates = list(parent.glob(pattern))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in candidates:
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            if uid is not None and path.stat().st_uid != uid:
                continue
            if owner_is_gone(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed
