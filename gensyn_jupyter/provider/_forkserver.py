"""A fork server: one process imports torch once; each worker is a fork of it.

A cold worker spends about 4 s (more on a busy machine) importing torch; a
fork of a process that already has takes milliseconds. The server is
started once per provider with the scrubbed worker environment; on each
request it forks a child that takes the pipes the provider sent along
(``SCM_RIGHTS``), becomes the leader of its own process group, and then
behaves exactly like a worker started by ``python -m
gensyn_jupyter.provider._worker``: it says "ready" on its control pipe, reads
one job from stdin, runs it and exits. The server reaps its children and
reports their exit status, so the provider sees a process-like object.

Forking is what torch's own DataLoader workers do on Linux. The server never
initialises CUDA (its warm-up is on CPU), so a child can. The server is
single-threaded (``select`` on its socket and a SIGCHLD wake-up pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["ForkServer", "ForkedProcess"]

_MAX_MESSAGE = 4096


class ForkedProcess:
    """The provider's handle on a forked worker: the parts of ``Popen`` it uses."""

    def __init__(
        self,
        pid: int,
        stdin: IO[bytes],
        stdout: IO[bytes],
        stderr: IO[bytes],
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.stderr: IO[bytes] | None = stderr
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        if self._on_exit is not None:  # the sandbox's clean-up: before anyone reads results
            try:
                self._on_exit()
            except Exception as exc:
                print(
                    f"[forkserver] clean-up after worker {self.pid} failed: {exc}", file=sys.stderr
                )
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """Starts the server process and forks workers from it.

    Parameters
    ----------
    env, cwd
        The scrubbed worker environment and directory (children inherit them).
    """

    def __init__(self, *, env: dict[str, str], cwd: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._lock = threading.Lock()
        self._replies: dict[str, threading.Event] = {}
        self._pids: dict[str, int] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready = threading.Event()
        self._alive = True
        self._counter = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "gensyn_jupyter.provider._forkserver",
             "--socket-fd", str(theirs.fileno()), "--parent-pid", str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
        theirs.close()
        threading.Thread(target=self._read, name="gensyn-forkserver", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._alive and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        """True once the server has imported torch (and is still running)."""
        return self._ready.wait(timeout) and self.alive

    def spawn(
        self,
        *,
        control_fd: int,
        timeout: float = 10.0,
        sandbox: dict[str, Any] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> ForkedProcess:
        """Fork a worker whose control pipe is ``control_fd`` (its write end; closed here).

        ``sandbox``: the spec the child enters before anything else
        (``._sandbox_enter``); ``on_exit`` runs once it exited, before ``wait`` returns.
        """
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        child_fds = [in_r, out_w, err_w, control_fd]
        with self._lock:
            self._counter += 1
            request = str(self._counter)
            event = self._replies[request] = threading.Event()
        try:
            message = json.dumps({"spawn": request, "sandbox": sandbox}).encode()
            socket.send_fds(self._sock, [message], child_fds)
        except OSError:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        if not event.wait(timeout) or request not in self._pids:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise RuntimeError("the fork server did not fork a worker")
        pid = self._pids.pop(request)
        child = ForkedProcess(
            pid, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), on_exit
        )
        with self._lock:
            self._children[pid] = child
            early = self._pids.pop(f"exit:{pid}", None)
        if early is not None:
            child._set_exit(early)
        return child

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(_MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            message: dict[str, Any] = json.loads(data)
            if "ready" in message:
                self._ready.set()
            elif "spawned" in message:
                with self._lock:
                    self._pids[str(message["spawned"])] = int(message["pid"])
                    event = self._replies.pop(str(message["spawned"]), None)
                if event is not None:
                    event.set()
            elif "exited" in message:
                pid, code = int(message["exited"]), int(message["code"])
                with self._lock:
                    child = self._children.pop(pid, None)
                    if child is None:  # exited before spawn() registered it
                        self._pids[f"exit:{pid}"] = code
                if child is not None:
                    child._set_exit(code)
        # The server is gone: its children died with it (PR_SET_PDEATHSIG).
        self._alive = False
        self._ready.set()
        with self._lock:
            children, self._children = list(self._children.values()), {}
            waiting, self._replies = list(self._replies.values()), {}
        for child in children:
            child._set_exit(-signal.SIGKILL)
        for event in waiting:
            event.set()

    def close(self) -> None:
        """Stop the server (its children receive SIGKILL with it)."""
        self._alive = False
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._sock.close()


# ----------------------------------------------------------------------------- server side


def _serve(sock: socket.socket) -> None:
    from ._worker import _die_with_parent, _warm_up

    _warm_up()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(sock)
        if sock.fileno() in readable:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 4)
            if not data:
                return  # the provider is gone
            message = json.loads(data)
            request = message["spawn"]
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                sock.close()
                _child(fds, _die_with_parent, message.get("sandbox"))
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"spawned": request, "pid": pid}).encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        sock.send(json.dumps({"exited": pid, "code": code}).encode())


def _child(fds: list[int], die_with_parent: Any, sandbox: dict[str, Any] | None = None) -> None:
    """In the fork: take the pipes, lead a process group, run one job like a worker.

    With ``sandbox``, the child enters it (``._sandbox_enter.enter``) before the
    parent-death signal is set (a uid change would clear it) and before any job.
    """
    try:
        os.setsid()
        stdin, stdout, stderr, control_fd = fds
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        # unbuffered like `python -u` (the provider streams what the cell prints)
        sys.stdout = io.TextIOWrapper(open(1, "wb", 0, closefd=False), write_through=True)  # noqa: SIM115
        sys.stderr = io.TextIOWrapper(open(2, "wb", 0, closefd=False), write_through=True)  # noqa: SIM115
        if sandbox is not None:
            from ._sandbox_enter import enter

            enter(sandbox)
        die_with_parent(0)
        import torch

        torch.seed()  # a fresh seed per worker, as a freshly started process would have
        from ._worker import serve_job

        serve_job(control_fd)
    except BaseException:  # a child must never return into the server loop
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gensyn-forkserver")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    from ._worker import _die_with_parent

    _die_with_parent(args.parent_pid)
    sock = socket.socket(fileno=args.socket_fd)
    _serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
