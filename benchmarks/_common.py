"""What every benchmark shares: the machine line, percentiles, tables, a devnet.

A benchmark prints a table of figures beside a baseline measured in the same
run, and the ratio; it never asserts a timing (these machines are noisy).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Devnet",
    "machine",
    "percentile",
    "print_table",
    "rss_mb",
    "running_devnet",
    "running_kernel",
    "start_coordinator",
]


def machine() -> str:
    """One line naming the machine, for the header of every table."""
    import torch

    threads = torch.get_num_threads()
    return (
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({threads} threads), {time.strftime('%Y-%m-%d %H:%M')}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A markdown table (readable in a terminal, pasteable into docs/benchmarks.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(v) for v in row) + " |")
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (psutil)."""
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 1e6


@dataclass(frozen=True)
class Devnet:
    """A devnet of a benchmark's own (a temporary ``GENSYN_HOME``)."""

    home: Path
    url: str
    env: dict[str, str]


@contextlib.contextmanager
def running_devnet(*, providers: int = 2, chain: str = "none") -> Iterator[Devnet]:
    """``gensyn devnet up`` in a temporary home; ``down`` on exit.

    Also points this process at it (``GENSYN_HOME``), so an in-process
    ``CoordinatorClient`` or a kernel started with ``env`` finds it.
    """
    from gensyn_jupyter.config import read_devnet_state

    home = Path(tempfile.mkdtemp(prefix="gensyn-bench-"))
    env = {**os.environ, "GENSYN_HOME": str(home), "GENSYN_PROGRESS": "none"}
    gensyn = [sys.executable, "-m", "gensyn_jupyter"]
    up = [*gensyn, "devnet", "up", "--detach", "--chain", chain, "--providers", str(providers)]
    subprocess.run(up, env=env, check=True, capture_output=True, timeout=300)
    saved = os.environ.get("GENSYN_HOME")
    os.environ["GENSYN_HOME"] = str(home)
    os.environ["GENSYN_PROGRESS"] = "none"  # train_cell in this process: no progress line
    try:
        state = read_devnet_state(home / "devnet")
        if state is None:
            raise RuntimeError(f"the devnet in {home} wrote no devnet.json")
        yield Devnet(home=home, url=state.url, env=env)
    finally:
        if saved is None:
            os.environ.pop("GENSYN_HOME", None)
        else:
            os.environ["GENSYN_HOME"] = saved
        subprocess.run(
            [*gensyn, "devnet", "down"], env=env, check=False, capture_output=True, timeout=120
        )


@contextlib.contextmanager
def start_coordinator() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A bare coordinator (no providers, no chain) on a free loopback port."""
    import httpx

    from gensyn_jupyter.devnet import free_port

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="gensyn-bench-coord-"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gensyn_jupyter",
            "coordinator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the coordinator did not start in 60 s")
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def running_kernel(env: dict[str, str]) -> Iterator[tuple[object, int]]:
    """A real IPython kernel with ``env`` (no progress line); yields its client and pid."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**env, "GENSYN_PROGRESS": "none"})
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        try:
            yield kc, km.provisioner.process.pid  # type: ignore[union-attr]
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
