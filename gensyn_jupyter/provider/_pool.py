"""Warm workers: a worker process is ready before the lease arrives.

A cold Python process spends about 4 s importing torch and building its first
optimizer; the provider keeps spare workers that are past that, waiting for a
job, forked from a fork server that paid the import once (``_forkserver``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ._forkserver import ForkedProcess, ForkServer
from ._sandbox import Sandbox

__all__ = ["Worker", "WorkerPool", "worker_environment"]

_FORK_SERVER_START_S = 120.0  # importing torch on a busy 2-core machine
_MAX_SERVER_STARTS = 3

_PASSED_PREFIXES = ("OPENBLAS_", "MKL_", "CUDA_", "NVIDIA_", "CUBLAS_", "TORCH_")
_PASSED_NAMES = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "TZ")


def worker_environment(*, home: Path, threads: int | None) -> dict[str, str]:
    """A scrubbed environment: no provider secrets, a private home and temp dir."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _PASSED_NAMES or key.startswith(_PASSED_PREFIXES)
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.setdefault("LANG", "C.UTF-8")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    # OpenMP threads that spin at barriers collapse when another process wants the
    # core (a 2-thread MLP on 2 busy cores: 5-60 steps/s spinning, 110-200 passive).
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    return env


class Worker:
    """One worker process and its pipes: forked from the fork server, or started cold.

    Its process (``proc``: a ``Popen`` or a :class:`ForkedProcess`) exists once
    :meth:`wait_ready` returned True.
    """

    proc: subprocess.Popen[bytes] | ForkedProcess

    def __init__(
        self,
        *,
        env: dict[str, str],
        cwd: Path,
        server: ForkServer | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self._sandbox = sandbox
        self.uid = sandbox.next_uid() if sandbox is not None else None
        """The worker's own uid in the sandbox (None: the provider's)."""
        self._spec = sandbox.child_spec(self.uid) if sandbox is not None else None
        self._granted: list[Path] = []
        self._released = threading.Lock()
        read_fd, write_fd = os.pipe()
        self.control: IO[bytes] = os.fdopen(read_fd, "rb")
        self._ready = threading.Event()
        self._first: dict[str, Any] | None = None
        if server is None:
            command = [
                sys.executable,
                "-u",
                "-m",
                "gensyn_jupyter.provider._worker",
                "--control-fd",
                str(write_fd),
                "--parent-pid",
                str(os.getpid()),
            ]
            if self._spec is not None:  # enter the sandbox, then exec the worker
                enter = [sys.executable, "-m", "gensyn_jupyter.provider._sandbox_enter"]
                command = [*enter, "--spec", json.dumps(self._spec), "--", *command]
            self.proc = _Popen(
                command,
                self._release,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            os.close(write_fd)
            target: Any = self._await_ready
            args: tuple[Any, ...] = ()
        else:
            target, args = self._fork, (server, write_fd)
        threading.Thread(target=target, args=args, daemon=True).start()

    def _fork(self, server: ForkServer, write_fd: int) -> None:
        if not server.wait_ready(_FORK_SERVER_START_S):
            os.close(write_fd)
            self._ready.set()
            return
        try:
            self.proc = server.spawn(  # closes write_fd
                control_fd=write_fd, sandbox=self._spec, on_exit=self._release
            )
        except (OSError, RuntimeError):
            self._ready.set()
            return
        self._await_ready()

    def _await_ready(self) -> None:
        line = self.control.readline()
        if line:
            self._first = json.loads(line)
        self._ready.set()

    def alive(self) -> bool:
        """False once it failed to start or exited (a worker still starting is alive)."""
        if not self._ready.is_set():
            return True
        return self._first is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        """True when the worker has imported torch and waits for a job."""
        return self._ready.wait(timeout) and self._first is not None

    def start_job(self, job: dict[str, Any]) -> None:
        """Send the job (its directories handed to the worker's uid, its paths as it sees them)."""
        if self._sandbox is not None:
            job, self._granted = self._sandbox.grant(job, self.uid)
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.close()

    def kill(self) -> None:
        """Kill the worker and everything it started (its own process group)."""
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _release(self) -> None:
        """Once it exited: the sandbox kills what it left and takes its directories back."""
        if self._sandbox is not None and self._released.acquire(blocking=False):
            self._sandbox.release(self.uid, self._granted)


class _Popen(subprocess.Popen[bytes]):
    """A cold worker's process: runs the sandbox's clean-up once it has exited."""

    def __init__(self, args: list[str], on_exit: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._on_exit = on_exit

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._on_exit()
        return code


class WorkerPool:
    """Keeps ``size`` warm workers ready; hands out the readiest and starts the next.

    Workers are forks of a :class:`ForkServer` that imported torch once (a few
    milliseconds each instead of seconds); where the server cannot run
    (``fork=False``, or it died ``_MAX_SERVER_STARTS`` times) they are started
    cold. Two spares by default, so a cell run again right away finds one.
    """

    def __init__(
        self,
        *,
        env: dict[str, str],
        cwd: Path,
        size: int = 2,
        fork: bool = True,
        sandbox: Sandbox | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {size}")
        self._env = env
        self._cwd = cwd
        self._size = size
        self._lock = threading.Lock()
        self._spares: list[Worker] = []
        self._fork = fork
        self._server: ForkServer | None = None
        self._server_starts = 0
        self.sandbox = sandbox
        """Where workers run the cell (None: as the provider, unconfined)."""

    def _fork_server(self) -> ForkServer | None:
        """The running fork server (started or restarted here), or None: start cold."""
        if not self._fork:
            return None
        if self._server is not None and not self._server.alive:
            self._server.close()
            self._server = None
        if self._server is None and self._server_starts < _MAX_SERVER_STARTS:
            self._server_starts += 1
            self._server = ForkServer(env=self._env, cwd=self._cwd)
        return self._server

    def replenish(self) -> None:
        with self._lock:
            self._spares = [w for w in self._spares if w.alive()]
            while len(self._spares) < self._size:
                server = self._fork_server()
                worker = Worker(env=self._env, cwd=self._cwd, server=server, sandbox=self.sandbox)
                self._spares.append(worker)

    def take(self, *, timeout: float = 120.0) -> Worker:
        """A ready worker (the oldest spare, which is the likeliest to be warm)."""
        for _ in range(2):
            self.replenish()
            with self._lock:
                worker = self._spares.pop(0)
            if worker.wait_ready(timeout):
                return worker
            worker.kill()
        raise RuntimeError("the worker process failed to start twice; see the provider's log")

    def close(self) -> None:
        with self._lock:
            for worker in self._spares:
                worker.kill()
            self._spares.clear()
            if self._server is not None:
                self._server.close()
                self._server = None
