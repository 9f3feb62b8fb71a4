"""Warm workers: a worker process is started ahead of the lease.

A cold Python process spends about 4 s importing torch and building its first
optimizer; the provider keeps one worker that has done so, waiting for a job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["Worker", "WorkerPool", "worker_environment"]

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
    return env


class Worker:
    """One started worker process and its pipes."""

    def __init__(self, *, env: dict[str, str], cwd: Path) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "gensyn_jupyter.provider._worker",
                "--control-fd",
                str(write_fd),
                "--parent-pid",
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(write_fd)
        self.control: IO[bytes] = os.fdopen(read_fd, "rb")
        self._ready = threading.Event()
        self._first: dict[str, Any] | None = None
        threading.Thread(target=self._await_ready, daemon=True).start()

    def _await_ready(self) -> None:
        line = self.control.readline()
        if line:
            self._first = json.loads(line)
        self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        """True when the worker has imported torch and waits for a job."""
        return self._ready.wait(timeout) and self._first is not None

    def start_job(self, job: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.close()

    def kill(self) -> None:
        """Kill the worker and everything it started (its own process group)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class WorkerPool:
    """Keeps ``size`` warm workers ready; hands out the readiest and starts the next.

    Two by default, so a cell run again right after the last one still finds
    a warm worker while the next one imports torch (about 4 s).
    """

    def __init__(self, *, env: dict[str, str], cwd: Path, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {size}")
        self._env = env
        self._cwd = cwd
        self._size = size
        self._lock = threading.Lock()
        self._spares: list[Worker] = []

    def replenish(self) -> None:
        with self._lock:
            self._spares = [w for w in self._spares if w.proc.poll() is None]
            while len(self._spares) < self._size:
                self._spares.append(Worker(env=self._env, cwd=self._cwd))

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
