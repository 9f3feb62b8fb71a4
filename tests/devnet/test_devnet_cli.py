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
from eth_account import Account
from web3 import HTTPProvider, Web3

from gensyn_jupyter.config import read_devnet_state

from .._devnet import gensyn

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
        roles = {p["info"]["name"]: p["info"]["role"] for p in providers}
        assert roles == {"devnet-1": "provider", "devnet-referee": "referee"}
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
def test_detached_devnet_on_the_embedded_chain_status_faucet_and_down(tmp_path: Path) -> None:
    env = {"GENSYN_HOME": str(tmp_path)}
    up = gensyn("devnet", "up", "--detach", "--chain", "embedded", env=env)
    assert "devnet started at http://127.0.0.1:" in up
    assert "already running" in gensyn("devnet", "up", "--detach", env=env)
    status = gensyn("devnet", "status", env=env)
    assert "devnet-1" in status and "devnet-2" in status and "idle" in status
    assert "chain 31337 at http://127.0.0.1:" in status and "TaskMarket 0x" in status
    fresh = Account.create().address
    assert f"sent 10 ETH to {fresh}" in gensyn("devnet", "faucet", fresh, env=env)
    state = read_devnet_state(tmp_path / "devnet")
    assert state is not None and state.rpc_url is not None
    assert Web3(HTTPProvider(state.rpc_url)).eth.get_balance(fresh) == 10 * 10**18
    refused = subprocess.run(
        [*GENSYN, "devnet", "faucet", "0x1234"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "the faucet refused" in refused.stderr
    assert "devnet stopped" in gensyn("devnet", "down", env=env)
    assert "no devnet running" in gensyn("devnet", "status", env=env)


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
