"""Files and processes a sandboxed worker leaves: handed over, taken back, killed."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from pathlib import Path

__all__ = ["chown_tree", "kill_uid", "make_readable", "reclaim"]


def chown_tree(path: Path, uid: int) -> None:
    for parent, dirs, files in os.walk(path):
        os.chown(parent, uid, uid)
        for name in [*dirs, *files]:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def make_readable(blob_dir: Path) -> None:
    os.chmod(blob_dir, 0o711)
    with os.scandir(blob_dir) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                os.chmod(entry.path, 0o644)


def reclaim(path: Path) -> None:
    """Owned by root again; nothing left but plain files and directories."""
    if not path.exists():
        return
    if path.is_symlink():
        path.unlink()
        return
    os.chown(path, 0, 0, follow_symlinks=False)
    os.chmod(path, 0o700)
    for parent, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            full = os.path.join(parent, name)
            info = os.lstat(full)
            if stat.S_ISDIR(info.st_mode):
                os.chown(full, 0, 0, follow_symlinks=False)
                os.chmod(full, 0o700)
            elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                os.chown(full, 0, 0, follow_symlinks=False)
            else:  # a symlink, fifo, socket, device or hard link: never read by the provider
                os.unlink(full)


def _pids_of(uid: int) -> list[int]:
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with (
            contextlib.suppress(OSError),
            open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as status,
        ):
            for line in status:
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        pids.append(int(entry))
                    break
    return pids


def kill_uid(uid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process of ``uid`` (a cell's escaped children, a fork bomb)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _pids_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
