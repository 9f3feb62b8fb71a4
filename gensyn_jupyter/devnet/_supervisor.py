"""A local devnet: one coordinator and N providers as child processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from ..config import DevnetState, session_file
from ._chain import MAX_PROVIDERS, start_devnet_chain

__all__ = ["free_port", "run_devnet"]

_READY_TIMEOUT = 120.0
_MAX_RESTARTS = 5


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Child:
    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **env} if env else None
        self.log_path = log_path
        self.restarts = 0
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 (kept open for the child)
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def restart(self) -> None:
        self.restarts += 1
        self.proc = self._spawn()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def reap(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _wait_ready(
    url: str, providers: int, children: list[_Child], session: Path | None = None
) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            for child in children:
                if child.proc.poll() is not None:
                    raise RuntimeError(
                        f"devnet {child.name} exited with code {child.proc.returncode}:\n"
                        + child.tail()
                    )
            try:
                listed = client.get("/v1/providers").json()
                if not isinstance(listed, list):
                    raise ValueError("the coordinator is not serving providers yet")
                online = sum(1 for p in listed if p["state"] != "offline")
                if online >= providers and (session is None or session.exists()):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the devnet was not ready after {_READY_TIMEOUT:.0f} s")


def run_devnet(
    *,
    data_dir: Path,
    port: int = 0,
    providers: int = 2,
    threads: int | None = None,
    lease_ttl: float = 15.0,
    chain: str = "auto",
    challenge_window: int = 1,
) -> int:
    """Run the devnet in the foreground until SIGINT/SIGTERM; return an exit code.

    Writes ``data_dir/devnet.json`` once every provider has registered and
    removes it on the way out. With ``chain`` other than ``none`` a dev chain
    (anvil, or the embedded node) runs the escrow: the market is deployed,
    providers stake with their dev keys, and a signer approves the notebook
    user's tasks within the devnet budget, and a referee (dev key 8) rules on
    challenged spot checks; ``challenge_window`` (seconds) is how long a
    committed result may be challenged (1 s by default: results settle at once,
    but a verifier must replay and challenge within it, so ``--verify spot``
    cheaters are only slashed with a longer window). Children that die are restarted (at most
    five times each), so a crashed provider does not take the devnet down.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    # One core is left to the coordinator, the kernel and the providers' own I/O:
    # OpenMP threads that compete with them for every core stall at each barrier.
    threads = threads or max(1, ((os.cpu_count() or 1) - 1) // max(1, providers))
    exe = [sys.executable, "-m", "gensyn_jupyter"]
    if chain != "none" and providers > MAX_PROVIDERS:
        print(f"devnet failed: at most {MAX_PROVIDERS} providers", file=sys.stderr, flush=True)
        return 1
    devchain = (
        start_devnet_chain(
            kind=chain, log_path=data_dir / "chain.log", challenge_window=challenge_window
        )
        if chain != "none"
        else None
    )
    coordinator_env: dict[str, str] = {}
    chain_args: list[str] = []
    if devchain is not None:
        chain_args = ["--rpc", devchain.node.rpc_url, "--market", devchain.market]
        coordinator_env = {
            "GENSYN_OPERATOR_KEY": devchain.operator_key,
            "GENSYN_FAUCET_KEY": devchain.faucet_key,
        }
    children = [
        _Child(
            "coordinator",
            [
                *exe,
                "coordinator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir / "coordinator"),
                "--lease-ttl",
                str(lease_ttl),
                *chain_args,
            ],
            data_dir / "coordinator.log",
            coordinator_env,
        )
    ]
    for index in range(1, providers + 1):
        children.append(
            _Child(
                f"provider devnet-{index}",
                [
                    *exe,
                    "provider",
                    "--coordinator",
                    url,
                    "--name",
                    f"devnet-{index}",
                    "--work-dir",
                    str(data_dir / f"provider-{index}"),
                    "--threads",
                    str(threads),
                ],
                data_dir / f"provider-{index}.log",
                {"GENSYN_PRIVATE_KEY": devchain.provider_key(index)} if devchain else None,
            )
        )
    children.append(
        _Child(
            "referee",
            [
                *exe,
                "provider",
                "--coordinator",
                url,
                "--referee",
                "--name",
                "devnet-referee",
                "--work-dir",
                str(data_dir / "referee"),
                "--threads",
                str(threads),
            ],
            data_dir / "referee.log",
            {"GENSYN_PRIVATE_KEY": devchain.referee_key} if devchain else None,
        )
    )
    if devchain is not None:
        children.append(
            _Child(
                "signer",
                [*exe, "signer", "--network", url, "--budget", "devnet"],
                data_dir / "signer.log",
                {"GENSYN_PRIVATE_KEY": devchain.user_key},
            )
        )
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    state_path = data_dir / "devnet.json"
    code = 0
    try:
        # the providers and the referee
        _wait_ready(url, providers + 1, children, session_file(url) if devchain else None)
        state = DevnetState(
            pid=os.getpid(),
            url=url,
            providers=providers,
            data_dir=str(data_dir),
            started_at=time.time(),
            rpc_url=devchain.node.rpc_url if devchain else None,
            chain_id=devchain.node.chain_id if devchain else None,
            market=devchain.market if devchain else None,
        )
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, state_path)
        print(
            f"devnet ready at {url}: coordinator + {providers} providers; state in {data_dir}",
            flush=True,
        )
        while not stopping:
            time.sleep(0.2)
            for child in children:
                if child.proc.poll() is not None and not stopping:
                    if child.restarts >= _MAX_RESTARTS:
                        raise RuntimeError(f"devnet {child.name} keeps dying:\n{child.tail()}")
                    print(
                        f"devnet {child.name} exited ({child.proc.returncode}); restarting",
                        flush=True,
                    )
                    child.restart()
    except RuntimeError as exc:
        print(f"devnet failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        state_path.unlink(missing_ok=True)
        for child in reversed(children):
            child.stop()
        deadline = time.monotonic() + 10.0
        for child in reversed(children):
            child.reap(deadline)
        if devchain is not None:
            devchain.stop()
        print("devnet stopped", flush=True)
    return code
