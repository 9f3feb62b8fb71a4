"""Start a devnet in the background, stop it, and say how it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ..config import DevnetState, pid_alive, read_devnet_state

__all__ = ["devnet_faucet", "devnet_status", "start_detached", "stop_devnet"]


def _running(data_dir: Path) -> DevnetState | None:
    state = read_devnet_state(data_dir)
    if state is not None and not pid_alive(state.pid):
        (data_dir / "devnet.json").unlink(missing_ok=True)
        return None
    return state


def start_detached(
    *,
    data_dir: Path,
    port: int = 0,
    providers: int = 2,
    lease_ttl: float = 15.0,
    chain: str = "auto",
    timeout: float = 180.0,
    challenge_window: int = 1,
) -> tuple[DevnetState, bool]:
    """Start the devnet in the background; return its state and whether it was started now."""
    running = _running(data_dir)
    if running is not None:
        return running, False
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "devnet.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gensyn_jupyter",
                "devnet",
                "up",
                "--port",
                str(port),
                "--providers",
                str(providers),
                "--data-dir",
                str(data_dir),
                "--lease-ttl",
                str(lease_ttl),
                "--chain",
                chain,
                "--challenge-window",
                str(challenge_window),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_devnet_state(data_dir)
        if state is not None and state.pid == proc.pid:
            return state, True
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the devnet exited with code {proc.returncode}:\n{tail}")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"the devnet was not ready after {timeout:.0f} s; see {log_path}")


def stop_devnet(*, data_dir: Path, timeout: float = 20.0) -> bool:
    """Stop the background devnet; False when none was running."""
    state = _running(data_dir)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(state.pid):
        time.sleep(0.1)
    if pid_alive(state.pid):
        # A detached devnet leads its own process group: take its children with it.
        if os.getpgid(state.pid) == state.pid:
            os.killpg(state.pid, signal.SIGKILL)
        else:
            os.kill(state.pid, signal.SIGKILL)
    (data_dir / "devnet.json").unlink(missing_ok=True)
    return True


def devnet_faucet(*, data_dir: Path, address: str) -> str:
    """Ask the running devnet's faucet for coins; the line to print.

    Raises
    ------
    RuntimeError
        When no devnet runs, it has no chain, or the address is malformed.
    """
    state = _running(data_dir)
    if state is None:
        raise RuntimeError("no devnet running; start one with `gensyn devnet up --detach`")
    reply = httpx.post(f"{state.url}/v1/faucet", json={"address": address}, timeout=30.0)
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise RuntimeError(f"the faucet refused: {detail}")
    body = reply.json()
    return f"sent {body['wei'] / 10**18:g} ETH to {body['address']} (tx {body['tx']})"


def devnet_status(*, data_dir: Path) -> str:
    """One paragraph on the devnet: where, since when, providers, tasks."""
    state = _running(data_dir)
    if state is None:
        return f"no devnet running (state dir {data_dir}); start one with `gensyn devnet up`"
    try:
        health = httpx.get(f"{state.url}/v1/health", timeout=3.0).json()
        providers = httpx.get(f"{state.url}/v1/providers", timeout=3.0).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"devnet pid {state.pid} at {state.url} is not answering ({exc})"
    lines = [
        f"devnet at {state.url} (pid {state.pid}, up {time.time() - state.started_at:.0f} s), "
        f"{health.get('tasks', 0)} tasks, state in {data_dir}"
    ]
    if state.rpc_url:
        lines.append(
            f"  chain {state.chain_id} at {state.rpc_url}, TaskMarket {state.market} "
            "(dev keys only: play money)"
        )
    lines += [
        f"  {p['info']['name']} ({p['id']}): {p['state']}, {p['info']['device_type']}"
        for p in providers
    ]
    return "\n".join(lines)
