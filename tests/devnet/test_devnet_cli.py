"""``gensyn devnet``: foreground with Ctrl-C, detached with status and down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gensyn_jupyter.config import read_devnet_state

GENSYN = [sys.executable, "-m", "gensyn_jupyter"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "GENSYN_HOME": str(home)}


def _wait_for_state(data_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_devnet_state(data_dir) is not None:
            return
        time.sleep(0.2)
    raise AssertionError("the devnet never wrote devnet.json")


@pytest.mark.timeout(240)
def test_foreground_devnet_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*GENSYN, "devnet", "up", "--providers", "1"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_state(tmp_path / "devnet")
        state = read_devnet_state(tmp_path / "devnet")
        assert state is not None and state.pid == proc.pid
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # coordinator + provider (+ its warm worker)
        providers = httpx.get(f"{state.url}/v1/providers").json()
        assert [p["info"]["name"] for p in providers] == ["devnet-1"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "devnet ready at http://127.0.0.1:" in out and "devnet stopped" in out
    assert not (tmp_path / "devnet" / "devnet.json").exists()
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []


@pytest.mark.timeout(240)
def test_detached_devnet_status_and_down(tmp_path: Path) -> None:
    env = _env(tmp_path)
    up = subprocess.run(
        [*GENSYN, "devnet", "up", "--detach"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert "devnet started at http://127.0.0.1:" in up.stdout
    again = subprocess.run(
        [*GENSYN, "devnet", "up", "--detach"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "already running" in again.stdout
    status = subprocess.run(
        [*GENSYN, "devnet", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "devnet-1" in status.stdout and "devnet-2" in status.stdout and "idle" in status.stdout
    down = subprocess.run(
        [*GENSYN, "devnet", "down"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert "devnet stopped" in down.stdout
    after = subprocess.run(
        [*GENSYN, "devnet", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "no devnet running" in after.stdout


def test_devnet_needs_a_known_action(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*GENSYN, "devnet", "sideways"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "invalid choice: 'sideways'" in proc.stderr
