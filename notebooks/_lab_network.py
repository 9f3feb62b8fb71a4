"""The plumbing of ``scale_up.ipynb``: a second network, as a lab would run one.

What an operator types in two terminals: ``gensyn coordinator`` (a free
network: no chain, no escrow) and ``gensyn provider --coordinator URL``, both
on loopback with a data directory of their own. :func:`start` waits until the
provider is online and returns the network; :meth:`LabNetwork.stop` ends both.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["LabNetwork", "start"]

_WAIT = 90.0  # seconds: every wait below is bounded


class LabNetwork:
    def __init__(self, url: str, home: Path, procs: list[subprocess.Popen[bytes]]) -> None:
        self.url = url
        self.home = home
        self._procs = procs
        atexit.register(self.stop)

    def providers(self) -> list[str]:
        listed = httpx.get(f"{self.url}/v1/providers", timeout=10).json()
        return [p["info"]["name"] for p in listed if p["state"] != "offline"]

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str = "lab-box") -> LabNetwork:
    """A coordinator and one provider named ``name``, on loopback."""
    home = Path(tempfile.mkdtemp(prefix="gensyn-lab-"))
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "GENSYN_HOME": str(home)}
    gensyn = [sys.executable, "-m", "gensyn_jupyter"]
    log = open(home / "lab.log", "wb")  # noqa: SIM115 - kept open for the processes
    coordinator = subprocess.Popen(
        [*gensyn, "coordinator", "--port", url.rsplit(":", 1)[1], "--data-dir", str(home / "db")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs = [coordinator]
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        LabNetwork(url, home, procs).stop()
        raise RuntimeError(f"the lab coordinator did not start; see {home / 'lab.log'}")
    procs.append(
        subprocess.Popen(
            [
                *gensyn,
                "provider",
                "--coordinator",
                url,
                "--name",
                name,
                "--work-dir",
                str(home / "provider"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    network = LabNetwork(url, home, procs)
    while time.monotonic() < deadline and name not in network.providers():
        time.sleep(0.2)
    if name not in network.providers():
        network.stop()
        raise RuntimeError(f"the lab provider did not come online; see {home / 'lab.log'}")
    return network
