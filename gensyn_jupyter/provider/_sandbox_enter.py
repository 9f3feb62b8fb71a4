"""The worker's side of the sandbox: entered in a fresh child, before it takes a job.

:func:`enter` runs in the forked child of the fork server (``_forkserver._child``)
or in front of a cold worker (``python -m gensyn_jupyter.provider._sandbox_enter
--spec JSON -- python -m ...``, which ``exec``\\ s the worker). The spec comes from
the provider's :class:`~gensyn_jupyter.provider._sandbox.Sandbox`, which probed
what works on this machine; every step the spec asks for must succeed here, or
the child exits (a worker never runs less isolated than the provider said).

Order matters: namespaces and mounts need root, so they come first; the limits
are set while still root; the uid drop comes last, then ``PR_SET_NO_NEW_PRIVS``.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["enter", "loopback_up"]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

LIMITS = {
    "memory": "RLIMIT_DATA",
    "file_size": "RLIMIT_FSIZE",
    "processes": "RLIMIT_NPROC",
    "open_files": "RLIMIT_NOFILE",
    "cpu_seconds": "RLIMIT_CPU",
}
"""Spec key → the rlimit it sets."""


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    result = _libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {source} on {target}")


def loopback_up() -> None:
    """Bring up ``lo`` of this (new) network namespace: 127.0.0.1 reaches only itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _map_self(uid: int, gid: int) -> None:
    """In a new user namespace: be the same uid and gid as outside (non-root providers)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def _private_mounts(spec: dict[str, Any]) -> None:
    """A private scratch tmpfs at ``root`` holding ``work`` (the provider's work dir), home, tmp."""
    root = spec["root"]
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={spec['tmp_bytes']},mode=0755")
    work = os.path.join(root, "work")
    os.mkdir(work, 0o755)
    _mount(spec["work_dir"], work, None, _MS_BIND | _MS_REC, None)
    _mount("none", work, None, _MS_BIND | _MS_REMOUNT | _MS_NOSUID | _MS_NODEV, None)
    for name in ("home", "tmp"):
        path = os.path.join(root, name)
        os.mkdir(path, 0o700)
        if spec.get("uid") is not None:
            os.chown(path, spec["uid"], spec["gid"])
    for blocked, needed in spec.get("expose", []):
        _expose(blocked, needed)


def _expose(blocked: str, needed: list[str]) -> None:
    """Hide ``blocked`` (a directory others may not enter, e.g. ``/root``) behind an empty
    tmpfs, and bind back only the ``needed`` directories under it (the Python install)."""
    fds = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in needed]
    try:
        _mount("tmpfs", blocked, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for path, fd in zip(needed, fds, strict=True):
            os.makedirs(path, exist_ok=True)
            parent = path
            while parent != blocked and len(parent) > len(blocked):  # whatever the umask
                os.chmod(parent, 0o755)
                parent = os.path.dirname(parent)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
    finally:
        for fd in fds:
            os.close(fd)


def _scrub_environment(spec: dict[str, Any]) -> None:
    for key in [k for k in os.environ if k.startswith("GENSYN_")]:
        del os.environ[key]
    if spec.get("mounts"):
        os.environ["HOME"] = os.path.join(spec["root"], "home")
        os.environ["TMPDIR"] = os.path.join(spec["root"], "tmp")
    elif spec.get("home"):
        os.environ["HOME"] = os.environ["TMPDIR"] = spec["home"]
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def _set_limits(limits: dict[str, int]) -> None:
    for key, value in limits.items():
        which = getattr(resource, LIMITS[key])
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:  # only ever lower (raising needs CAP_SYS_RESOURCE)
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _drop_user(spec: dict[str, Any]) -> None:
    uid, gid = int(spec["uid"]), int(spec["gid"])
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not become uid {uid}")


def enter(spec: dict[str, Any]) -> None:
    """Put this process into the sandbox ``spec`` describes (see ``Sandbox.child_spec``).

    Raises ``OSError`` when a step fails: the caller must not run the job then.
    """
    flags = 0
    if spec.get("network"):
        flags |= CLONE_NEWNET
        if spec.get("user_namespace"):
            flags |= CLONE_NEWUSER
    if spec.get("mounts"):
        flags |= CLONE_NEWNS
    if flags:
        outside = os.getuid(), os.getgid()
        unshare(flags)
        if flags & CLONE_NEWUSER:
            _map_self(*outside)
    if spec.get("network"):
        loopback_up()
    if spec.get("mounts"):
        _private_mounts(spec)
    _scrub_environment(spec)
    _set_limits(dict(spec.get("limits", {})))
    if spec.get("uid") is not None:
        _drop_user(spec)
    libc = _libc()
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    # after a uid change the kernel made us undumpable; our own children may inspect us
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.chdir(os.path.join(spec["root"], "work") if spec.get("mounts") else spec["work_dir"])


def main(argv: list[str] | None = None) -> int:
    """Cold workers: ``--spec JSON -- COMMAND...``: enter the sandbox, then exec COMMAND."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[0] != "--spec" or args[2] != "--":
        print("usage: _sandbox_enter --spec JSON -- COMMAND...", file=sys.stderr)
        return 2
    try:
        enter(json.loads(args[1]))
    except OSError as exc:
        print(f"the provider's sandbox could not be entered: {exc}", file=sys.stderr)
        return 1
    command = args[3:]
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
