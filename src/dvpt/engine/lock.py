"""One process at a time in a run folder (or sweep or benchmark folder): ``.dvpt.lock``,
created with ``O_EXCL``.

Why: two ``dvpt train -o DIR`` at once would interleave their logs and overwrite each
other's checkpoints, and an evaluation reading a checkpoint while it is replaced could mix
epochs; two sweeps on one folder would interleave ``sweep.json``. The lock file holds the
owner's pid, host, and on Linux the process's start time (field 22 of ``/proc/<pid>/stat``)
and the boot id. On this host a lock is stale, and taken over with a warning, when its
process is gone (killed, crashed), when the machine has rebooted since (another boot id), or
when its pid now belongs to a process started at another time (the pid was reused). A lock
from another host cannot be checked and is refused with the file to delete. Without
``/proc`` (macOS, Windows) only the pid is checked.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
from pathlib import Path
from types import TracebackType

from ..errors import DvptError

log = logging.getLogger(__name__)

LOCK = ".dvpt.lock"


def _proc_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(4096)
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot, field 22 of ``/proc/<pid>/stat``); ``None``
    without ``/proc`` or once the process is gone. Together with the pid it names one process:
    a pid is reused, a (pid, start time) pair within one boot is not."""
    text = _proc_text(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text[text.rindex(")") + 1:].split()  # the name (field 2) may hold spaces and ')'
    return fields[19] if len(fields) > 19 else None  # fields[0] is field 3 (state)


def boot_id() -> str | None:
    """This boot's id (Linux); a lock written under another boot belongs to no running process."""
    text = (_proc_text("/proc/sys/kernel/random/boot_id") or "").strip()
    return text or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_reason(owner: dict, boot: str | None) -> str | None:
    """Why a lock written on this host belongs to no running process (``None``: it may).

    Checked in order: another boot id (the machine restarted since), a pid that no longer
    runs, a pid whose start time differs from the one recorded (reused by another process).
    What a lock does not record (written without ``/proc``) is not held against it.
    """
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None  # nothing to check: refused, the message names the file to delete
    if boot and owner.get("boot") and owner["boot"] != boot:
        return "written before the machine restarted"
    if not _alive(pid):
        return "no longer running"
    started = owner.get("started")
    now = process_start(pid)
    if started and now and str(started) != now:
        return f"pid {pid} now belongs to another process"
    return None


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.dvpt.lock`` for this process."""

    def __init__(self, folder: str | Path, purpose: str = "train", read_only_ok: bool = False,
                 kind: str = "run folder") -> None:
        """``read_only_ok``: in a folder this process cannot write to (a read-only share of
        finished runs) go ahead without a lock; only a reader (``dvpt eval``) may ask for it.
        ``kind`` names the folder in messages ("sweep folder", "benchmark folder")."""
        self.path = Path(folder) / LOCK
        self.purpose = purpose
        self.read_only_ok = read_only_ok
        self.kind = kind
        self.held = False

    def _owner(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")[:4096])
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock or raise a ``DvptError`` naming the process that holds it."""
        pid = os.getpid()
        me = {"pid": pid, "host": socket.gethostname(), "purpose": self.purpose,
              "started": process_start(pid), "boot": boot_id()}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    raise DvptError(f"{self.kind} {self.path.parent} is locked ({self.path} is unreadable); if no "
                                    f"dvpt runs there, delete {self.path}") from None
                same_host = owner.get("host") == me["host"]
                stale = stale_reason(owner, me["boot"]) if same_host else None
                if stale:
                    log.warning("removing the stale lock of process %s (%s): %s", owner.get("pid"), stale, self.path)
                    self.path.unlink(missing_ok=True)
                    continue
                where = "" if same_host else f" on {owner.get('host')}"
                raise DvptError(f"{self.kind} {self.path.parent} is in use by process {owner.get('pid')}{where} "
                                f"({owner.get('purpose', 'dvpt')}); wait for it to finish, or if no dvpt runs "
                                f"there, delete {self.path}") from None
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ENOENT):
                    raise DvptError(f"{self.path.parent} is not a folder that can hold a "
                                    f"{self.kind.split()[0]}") from None
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    if self.read_only_ok:
                        log.info("%s is read-only; reading it without a lock", self.path.parent)
                        return
                    raise DvptError(f"cannot write into {self.kind} {self.path.parent} ({exc.strerror}); "
                                    "choose a folder you can write to") from None
                raise
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise DvptError(f"cannot take the lock {self.path}: another process took it first; try again")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
