"""The provider's side of the worker sandbox (see ``docs/sandbox.md``).

Every worker runs the cell as its own unprivileged uid (a fresh one per worker,
like systemd's ``DynamicUser``), in its own session, network namespace (only
its own loopback) and mount namespace (a private tmpfs for its home and
``TMPDIR``, the provider's work dir bound under it), with resource limits, in
a scrubbed environment. :meth:`Sandbox.probe` finds out once, at start, which
of these this machine allows, and the provider's log says what is missing; the
worker then enters exactly that (``._sandbox_enter``) or does not start.

Around a job, :meth:`Sandbox.grant` hands the task's directories to the
worker's uid (and rewrites the job's paths to what the worker sees), and
:meth:`Sandbox.release` kills whatever the uid left running and takes the
directories back (symlinks and special files removed, so the provider never
follows a link the cell planted when it reads results).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._sandbox_enter import CLONE_NEWNET, CLONE_NEWUSER, enter, unshare
from ._sandbox_files import chown_tree, kill_uid, make_readable, reclaim

__all__ = ["Sandbox", "SandboxPolicy", "human_size", "parse_size", "sandbox_policy"]

_UID_BASE = 1_500_000_000
"""Worker uids: ``_UID_BASE + provider_pid * 64 + n``, unique to a live provider."""
_UIDS_PER_PROVIDER = 64
_NOBODY = 65534
_ROOT_VIEW = "/tmp/gensyn-sandbox"
"""The mount point of each worker's private tmpfs (an empty directory on the host)."""
_GIB = 1 << 30


def parse_size(text: str) -> int | None:
    """``"4G"``, ``"512M"``, ``"100k"``, ``"123"`` (bytes) or ``"none"`` → bytes (or None)."""
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    if value in ("none", "off", "unlimited", "0"):
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a size: write a number of bytes with an optional unit "
            "(512M, 4G) or 'none'"
        ) from None
    if size <= 0:
        raise ValueError(f"{text!r} is not a size: it must be positive (or 'none')")
    return size


def _default_memory() -> int | None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return int(total * 3 // 4)


@dataclass(frozen=True)
class SandboxPolicy:
    """What the provider's operator asks of the sandbox (``gensyn provider`` options)."""

    enabled: bool = True
    memory_bytes: int | None = field(default_factory=_default_memory)
    """``RLIMIT_DATA`` of the worker (heap and private mappings; not GPU memory)."""
    file_bytes: int | None = 16 * _GIB
    """``RLIMIT_FSIZE``: the largest file the cell may write."""
    processes: int | None = 1024
    """``RLIMIT_NPROC``: processes and threads of the worker's uid."""
    open_files: int | None = 8192
    """``RLIMIT_NOFILE``."""
    cpu_seconds: int | None = None
    """``RLIMIT_CPU`` (none by default: a task's wall-clock limit already applies)."""
    tmp_bytes: int = _GIB
    """Size of the worker's private tmpfs (its home and TMPDIR)."""


def sandbox_policy(
    *,
    enabled: bool = True,
    memory: str | None = None,
    file_size: str | None = "16G",
    processes: int | None = 1024,
    open_files: int | None = 8192,
    cpu_seconds: int | None = None,
    tmp_size: str = "1G",
) -> SandboxPolicy:
    """A policy from the command line's words (sizes like ``8G``; ``none`` for no limit).

    Raises ``ValueError`` naming the option that is wrong.
    """
    sizes: dict[str, int | None] = {}
    for option, text in (
        ("--memory-limit", memory),
        ("--max-file-size", file_size),
        ("--tmp-size", tmp_size),
    ):
        try:
            sizes[option] = parse_size(text) if text is not None else None
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
    for option, number in (
        ("--max-procs", processes),
        ("--max-open-files", open_files),
        ("--cpu-time", cpu_seconds),
    ):
        if number is not None and number < 1:
            raise ValueError(f"{option} must be at least 1, got {number}")
    if processes is not None and processes < 16:
        raise ValueError(f"--max-procs {processes} is too few for torch's threads: use 16 or more")
    return SandboxPolicy(
        enabled=enabled,
        memory_bytes=sizes["--memory-limit"] if memory is not None else _default_memory(),
        file_bytes=sizes["--max-file-size"],
        processes=processes,
        open_files=open_files,
        cpu_seconds=cpu_seconds,
        tmp_bytes=sizes["--tmp-size"] or _GIB,
    )


@dataclass
class _Abilities:
    user: bool = False
    """Workers get their own uid (else they keep the provider's)."""
    fixed_uid: int | None = None
    """One uid for every worker (when fresh uids are not mapped here)."""
    network: bool = False
    user_namespace: bool = False
    mounts: bool = False


def _exposures() -> list[tuple[str, list[str]]]:
    """Directories a worker needs (the Python install, ``sys.path``) behind a parent that
    others may not enter (``/root`` of a pyenv Python): ``[(parent, [needed...])]``."""
    import sys

    candidates = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path) if p}
    candidates.add(os.path.dirname(os.path.realpath(sys.executable)))
    here = os.path.realpath(os.getcwd())  # `python -m` puts it on sys.path: not a need
    if not os.path.isdir(os.path.join(here, "gensyn_jupyter")):
        candidates.discard(here)
    needed = sorted(p for p in candidates if os.path.isdir(p))
    needed = [p for p in needed if not any(p.startswith(q + os.sep) for q in needed if q != p)]
    plan: dict[str, list[str]] = {}
    for path in needed:
        parts = Path(path).parts
        for depth in range(2, len(parts)):
            ancestor = str(Path(*parts[:depth]))
            try:
                mode = os.stat(ancestor).st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:  # the first one on the way: nothing else to cover
                plan.setdefault(ancestor, []).append(path)
                break
    return sorted(plan.items())


def _gpu_groups() -> list[int]:
    """Groups that own GPU device nodes a worker needs (``/dev/nvidia*``, ``/dev/dri/*``)."""
    groups: set[int] = set()
    for pattern in ("nvidia*", "dri/*"):
        for path in Path("/dev").glob(pattern):
            with contextlib.suppress(OSError):
                info = path.stat()
                if info.st_gid != 0 and not info.st_mode & stat.S_IROTH:
                    groups.add(info.st_gid)
    return sorted(groups)


class Sandbox:
    """Chooses each worker's uid, prepares its directories, cleans up after it."""

    def __init__(
        self, policy: SandboxPolicy, *, work_dir: Path, log: Callable[[str], None]
    ) -> None:
        self.policy = policy
        self.work_dir = work_dir.resolve()
        self._log = log
        self._next = 0
        self._groups = _gpu_groups()
        self._expose = _exposures()
        self.abilities = _Abilities()
        self.notes: list[str] = []
        if policy.enabled:
            self._prepare_dirs()
            self.abilities = self._probe()
        self.notes = self._describe()
        for note in self.notes:
            log(note)

    # ------------------------------------------------------------------ set-up

    def _prepare_dirs(self) -> None:
        for sub in ("", "tasks", "checkpoints", "blobs", "home"):
            path = self.work_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # traversable, not listable, by worker uids
                os.chmod(path, 0o711)
        if os.geteuid() == 0:
            root = Path(_ROOT_VIEW)
            root.mkdir(mode=0o755, exist_ok=True)
            info = root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
                raise RuntimeError(
                    f"{root} exists but is not a directory owned by root: remove it, "
                    "then start the provider again (or use --no-sandbox)"
                )

    def _probe(self) -> _Abilities:
        """Try each step once in a throwaway fork; what worked is what workers get."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the probe child
            os.close(read_fd)
            found = _Abilities()
            with contextlib.suppress(BaseException):
                found = self._probe_child()
            os.write(write_fd, json.dumps(found.__dict__).encode())
            os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reader:
            data = reader.read()
        os.waitpid(pid, 0)
        try:
            return _Abilities(**json.loads(data))
        except (ValueError, TypeError):
            return _Abilities()

    def _probe_child(self) -> _Abilities:  # pragma: no cover - runs in the probe child
        found = _Abilities()
        root = os.geteuid() == 0
        try:
            unshare(CLONE_NEWNET if root else CLONE_NEWNET | CLONE_NEWUSER)
            found.network, found.user_namespace = True, not root
        except OSError:
            pass
        if not root:
            return found
        # own uid with a private mount (the work dir is then reachable whatever its
        # parents' modes), else own uid on the host's mounts (if the work dir is reachable)
        for mounts in (True, False):
            for uid in (self._uid_for(0), _NOBODY):
                pid = os.fork()
                if pid == 0:
                    try:
                        enter(self._spec(uid, found, mounts=mounts, network=False))
                        os.stat(self.view_of(str(self.work_dir / "tasks"), mounts=mounts))
                        os.listdir(os.path.dirname(os.__file__))  # the stdlib, for imports
                        os._exit(0)
                    except BaseException:
                        os._exit(1)
                if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:
                    found.user, found.mounts = True, mounts
                    found.fixed_uid = _NOBODY if uid == _NOBODY else None
                    return found
        return found

    def _describe(self) -> list[str]:
        if not self.policy.enabled:
            return [
                "sandbox OFF (--no-sandbox): cells run as this provider's user, with its "
                "network and files; use this only for development"
            ]
        have, missing = self.abilities, []
        if not have.user:
            missing.append(
                "cells run as this provider's own user (root is needed to give each worker "
                "its own uid)"
                if os.geteuid() != 0
                else "could not switch workers to another uid: cells run as root"
            )
        elif have.fixed_uid is not None:
            missing.append(
                f"fresh uids are not mapped here: every worker is uid {have.fixed_uid}, "
                "which shares its process limit and files with other such workers"
            )
        if not have.network:
            missing.append("no network namespace (unshare refused): cells have the host's network")
        if not have.mounts:
            missing.append("no mount namespace: home and TMPDIR are a directory of the work dir")
        limits = ", ".join(
            f"{key} {human_size(value) if key in ('memory', 'file_size') else value}"
            for key, value in self.limits().items()
        )
        line = f"sandbox on: limits {limits or 'none'}"
        if not missing:
            return [line + "; own uid, no network, private home and TMPDIR per worker"]
        return [line, *(f"sandbox degraded: {text}" for text in missing)]

    # --------------------------------------------------------------- per worker

    def _uid_for(self, n: int) -> int:
        return _UID_BASE + os.getpid() * _UIDS_PER_PROVIDER + n % _UIDS_PER_PROVIDER

    def next_uid(self) -> int | None:
        """The uid of the next worker (None: it keeps the provider's)."""
        if not (self.policy.enabled and self.abilities.user):
            return None
        if self.abilities.fixed_uid is not None:
            return self.abilities.fixed_uid
        self._next += 1
        return self._uid_for(self._next)

    def limits(self) -> dict[str, int]:
        policy = self.policy
        limits = {
            "memory": policy.memory_bytes,
            "file_size": policy.file_bytes,
            "open_files": policy.open_files,
            "cpu_seconds": policy.cpu_seconds,
            # counted per uid: only meaningful when the worker has its own
            "processes": policy.processes if self.abilities.user else None,
        }
        return {key: value for key, value in limits.items() if value is not None}

    def _spec(
        self, uid: int | None, have: _Abilities, *, mounts: bool, network: bool
    ) -> dict[str, Any]:
        return {
            "uid": uid,
            "gid": uid,
            "groups": self._groups,
            "network": network,
            "user_namespace": have.user_namespace,
            "mounts": mounts,
            "root": _ROOT_VIEW,
            "work_dir": str(self.work_dir),
            "tmp_bytes": self.policy.tmp_bytes,
            "limits": self.limits(),
            "expose": self._expose if mounts else [],
        }

    def child_spec(self, uid: int | None) -> dict[str, Any] | None:
        """What a worker enters (``._sandbox_enter.enter``); None with the sandbox off."""
        if not self.policy.enabled:
            return None
        have = self.abilities
        if have.mounts:  # the mount point, in case something cleaned /tmp since
            Path(_ROOT_VIEW).mkdir(mode=0o755, exist_ok=True)
        spec = self._spec(uid, have, mounts=have.mounts, network=have.network)
        if uid is not None and not have.mounts:  # a home of its own in the work dir
            home = self._home(uid)
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True, mode=0o700)
            os.chown(home, uid, uid)
            spec["home"] = str(home)
        return spec

    def _home(self, uid: int) -> Path:
        return self.work_dir / "home" / f"worker-{uid}"

    def view(self, path: str) -> str:
        """``path`` (under the work dir) as the worker sees it."""
        return self.view_of(path, mounts=self.policy.enabled and self.abilities.mounts)

    def view_of(self, path: str, *, mounts: bool) -> str:
        if not mounts:
            return path
        try:
            relative = Path(path).resolve().relative_to(self.work_dir)
        except ValueError:
            return path
        return str(Path(_ROOT_VIEW) / "work" / relative)

    def grant(self, job: dict[str, Any], uid: int | None) -> tuple[dict[str, Any], list[Path]]:
        """The job as the worker sees it, and the directories now its uid's."""
        if not self.policy.enabled:
            return job, []
        granted: list[Path] = []
        for key in ("workdir", "checkpoint_dir"):
            if job.get(key):
                path = Path(job[key])
                path.mkdir(parents=True, exist_ok=True)
                granted.append(path)
                if uid is not None:
                    chown_tree(path, uid)
                    os.chmod(path, 0o700)
        if uid is not None and job.get("blob_dir"):
            make_readable(Path(job["blob_dir"]))
        keys = ("workdir", "blob_dir", "checkpoint_dir")
        seen = {key: self.view(str(job[key])) for key in keys if job.get(key)}
        return {**job, **seen}, granted

    def release(self, uid: int | None, granted: list[Path]) -> None:
        """After the worker exited: kill what its uid left running, take its directories back."""
        if uid is not None:
            if self.abilities.fixed_uid is None:  # a shared uid (nobody) is not ours to kill
                kill_uid(uid)
            for path in granted:
                reclaim(path)
            if not self.abilities.mounts:
                shutil.rmtree(self._home(uid), ignore_errors=True)


def human_size(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
