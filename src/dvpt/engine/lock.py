"""One process at a time in a run folder: ``.dvpt.lock``, created with ``O_EXCL``.

Why: two ``dvpt train -o DIR`` at once would interleave their logs and overwrite each
other's checkpoints, and an evaluation reading a checkpoint while it is replaced could mix
epochs. The lock file holds the owner's pid and host. A lock whose process is gone (killed,
crashed) on this host is stale and taken over with a warning; a lock from another host
cannot be checked and is refused with the file to delete.
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.dvpt.lock`` for this process."""

    def __init__(self, folder: str | Path, purpose: str = "train", read_only_ok: bool = False) -> None:
        """``read_only_ok``: in a folder this process cannot write to (a read-only share of
        finished runs) go ahead without a lock; only a reader (``dvpt eval``) may ask for it."""
        self.path = Path(folder) / LOCK
        self.purpose = purpose
        self.read_only_ok = read_only_ok
        self.held = False

    def _owner(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")[:4096])
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock or raise a ``DvptError`` naming the process that holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    raise DvptError(f"run folder {self.path.parent} is locked ({self.path} is unreadable); if no dvpt "
                                    f"runs there, delete {self.path}") from None
                same_host = owner.get("host") == me["host"]
                pid = owner.get("pid")
                if same_host and isinstance(pid, int) and not _alive(pid):
                    log.warning("removing the stale lock of process %d (no longer running): %s", pid, self.path)
                    self.path.unlink(missing_ok=True)
                    continue
                where = "" if same_host else f" on {owner.get('host')}"
                raise DvptError(f"run folder {self.path.parent} is in use by process {pid}{where} "
                                f"({owner.get('purpose', 'dvpt')}); wait for it to finish, or if no dvpt runs "
                                f"there, delete {self.path}") from None
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ENOENT):
                    raise DvptError(f"{self.path.parent} is not a folder that can hold a run") from None
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    if self.read_only_ok:
                        log.info("%s is read-only; reading it without a lock", self.path.parent)
                        return
                    raise DvptError(f"cannot write into run folder {self.path.parent} ({exc.strerror}); "
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
