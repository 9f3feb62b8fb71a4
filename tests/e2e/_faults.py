"""Processes a fault test can kill: its own coordinator, providers, and a TCP proxy between.

Everything listens on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


class Proc:
    """A ``gensyn ...`` subprocess whose output goes to a log file (read on failure)."""

    def __init__(
        self, args: list[str], log: Path, *, preexec: Callable[[], object] | None = None
    ) -> None:
        self.args = args
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gensyn_jupyter", *args],
            env=_env(),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )

    @property
    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return int(self.proc.wait(timeout))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


def wait_healthy(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        if proc.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"coordinator at {url} did not come up:\n{proc.output[-3000:]}")


def start_coordinator(
    data_dir: Path, port: int, *, lease_ttl: float = 15.0, extra: tuple[str, ...] = ()
) -> Proc:
    args = ["coordinator", "--port", str(port), "--data-dir", str(data_dir)]
    proc = Proc([*args, "--lease-ttl", str(lease_ttl), *extra], data_dir.parent / "coord.log")
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


def start_provider(url: str, work_dir: Path, name: str, *, extra: tuple[str, ...] = ()) -> Proc:
    work_dir.mkdir(parents=True, exist_ok=True)
    args = ["provider", "--coordinator", url, "--work-dir", str(work_dir), "--name", name]
    return Proc([*args, "--device", "cpu", "--threads", "1", *extra], work_dir / "provider.log")


def wait_for_provider(url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            listed = httpx.get(f"{url}/v1/providers", timeout=2).json()
            if any(p["info"]["name"] == name and p["state"] != "offline" for p in listed):
                return
        time.sleep(0.2)
    raise AssertionError(f"provider {name} did not register with {url}")


def metric_value(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition, by its full name with labels."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name!r} in:\n{text}")


class TcpProxy:
    """A loopback TCP proxy that can cut the line: ``drop_for(s)`` resets every
    connection and refuses new ones for ``s`` seconds (connection refused, like
    a network that is down), then serves again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0
        self.drops = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, None], timeout: float = 10) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                # RST, not FIN: the peer sees the connection reset, as when a link dies
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    def drop_for(self, seconds: float) -> None:
        """Cut every connection now and refuse new ones for ``seconds`` (returns at once)."""
        self.drops += 1
        self._call(self._cut())

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self._listen()

        asyncio.run_coroutine_threadsafe(later(), self._loop)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


def sigkill(proc: Proc) -> None:
    """Kill ``proc`` at once (and its children, e.g. a provider's workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)


def provider_process(name: str, coordinator: str) -> psutil.Process:
    """The ``gensyn provider --name NAME --coordinator URL`` process."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if (
            "provider" in cmd
            and "--name" in cmd
            and cmd[cmd.index("--name") + 1] == name
            and cmd[cmd.index("--coordinator") + 1] == coordinator
        ):
            return proc
    raise AssertionError(f"no process for provider {name} of {coordinator}")
