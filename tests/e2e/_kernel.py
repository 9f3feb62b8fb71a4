"""Drive a real IPython kernel (jupyter_client) and collect what a user would see."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client import BlockingKernelClient, KernelManager


@dataclass
class CellRun:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + "\n".join(self.error) + "\n".join(self.results)


def _collect(run: CellRun, msg: dict[str, Any]) -> None:
    kind = msg["msg_type"]
    content = msg["content"]
    if kind == "stream":
        if content["name"] == "stdout":
            run.stdout += content["text"]
        else:
            run.stderr += content["text"]
    elif kind == "error":
        run.error.extend(content["traceback"])
    elif kind in ("execute_result", "display_data"):
        run.results.append(content["data"].get("text/plain", ""))


class Kernel:
    """A started kernel and its blocking client."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km = km
        self.kc = kc

    def run(self, code: str, *, timeout: float = 300) -> CellRun:
        run = CellRun(status="")
        reply = self.kc.execute_interactive(
            code, timeout=timeout, output_hook=lambda msg: _collect(run, msg), stop_on_error=False
        )
        run.status = reply["content"]["status"]
        return run

    def start(self, code: str) -> str:
        """Send ``code`` and return at once (for interrupts)."""
        return str(self.kc.execute(code))

    def read_until(self, msg_id: str, predicate: Any, *, timeout: float) -> CellRun:
        """Collect output of ``msg_id`` until ``predicate(run)`` or the cell ends."""
        run = CellRun(status="")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            _collect(run, msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                run.status = "idle"
                return run
            if predicate(run):
                return run
        raise TimeoutError(f"no match within {timeout} s; output so far:\n{run.text}")


@contextmanager
def started_kernel(env: dict[str, str]) -> Iterator[Kernel]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, **env})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
