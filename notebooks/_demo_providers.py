"""The plumbing of ``verification.ipynb``: a devnet of its own and two provider processes.

Everything here is what an operator would do in a terminal: ``gensyn devnet
up``, ``gensyn provider`` with a staked key (one of them started with
``--cheat wrong-data``, which the CLI allows for tests and demos only), and
``gensyn devnet down``. The notebook steers which provider runs a task by
which one is online when the task is queued; the other one joins once the
task runs and is then the only provider that can verify it.

The pids of the providers go to ``$GENSYN_HOME/demo-providers.pids`` so that a
test can kill what is left if the notebook dies half way.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market, dev_accounts
from gensyn_jupyter.config import pid_alive, read_devnet_state, read_session_token

__all__ = ["DemoNetwork"]

# The devnet's dev keys: 0 the notebook user, 2.. providers, 8 the referee, 9 the treasury.
_ROLES = {0: "you (the submitter)", 8: "the referee", 9: "the treasury"}
_WAIT = 120.0  # seconds: every wait below is bounded


class DemoNetwork:
    """A devnet with no providers of its own, and providers started by name."""

    def __init__(self, home: Path, *, created: bool) -> None:
        self.home = home
        self._created = created
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._names: dict[str, str] = {}  # address (lower case) -> who
        self._joiners: list[threading.Thread] = []
        self._errors: list[str] = []
        self._stopping = threading.Event()
        self._accounts = dev_accounts(10)
        for index, role in _ROLES.items():
            self._names[self._accounts[index].address.lower()] = role
        state = read_devnet_state(home / "devnet")
        assert state is not None and state.rpc_url and state.market
        self.url = state.url
        self.w3 = Web3(HTTPProvider(state.rpc_url))
        self.market = Market(w3=self.w3, address=state.market)
        atexit.register(self.stop)

    # -- the devnet --------------------------------------------------------
    @classmethod
    def start(cls, *, challenge_window: int = 60) -> DemoNetwork:
        """``gensyn devnet up`` in ``$GENSYN_HOME`` (else a new temporary directory).

        The kernel is pointed at it (``GENSYN_HOME``, ``GENSYN_NETWORK``) so
        that ``%%gensyn_train`` runs there and the devnet's signer pays for it.
        """
        given = os.environ.get("GENSYN_HOME")
        home = Path(given) if given else Path(tempfile.mkdtemp(prefix="gensyn-verification-"))
        running = read_devnet_state(home / "devnet")
        if running is not None and pid_alive(running.pid):
            raise RuntimeError(
                f"a devnet already runs in {home}; stop it (`gensyn devnet down` with "
                "GENSYN_HOME set to it) or point GENSYN_HOME elsewhere"
            )
        _gensyn(
            home,
            "devnet",
            "up",
            "--detach",
            "--providers",
            "0",  # the demo starts its own two
            "--challenge-window",
            str(challenge_window),
            "--lease-ttl",
            "4",  # a stopped provider is offline within seconds
        )
        demo = cls(home, created=not given)
        os.environ["GENSYN_HOME"] = str(home)
        os.environ["GENSYN_NETWORK"] = demo.url
        return demo

    def stop(self) -> None:
        """Stop the providers and the devnet (safe to call twice)."""
        self._stopping.set()  # a provider still waiting to join does not start
        for thread in self._joiners:
            thread.join(timeout=_WAIT)
        for name in list(self._procs):
            self.stop_provider(name)
        if (self.home / "devnet" / "devnet.json").exists():
            _gensyn(self.home, "devnet", "down")
        if self._created:
            shutil.rmtree(self.home, ignore_errors=True)
            self._created = False

    # -- providers ---------------------------------------------------------
    def start_provider(self, name: str, key: int, *, cheat: str | None = None) -> None:
        """``gensyn provider`` with dev key ``key``; returns once it is online."""
        account = self._accounts[key]
        self._names[account.address.lower()] = name
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_provider
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gensyn_jupyter",
                "provider",
                "--coordinator",
                self.url,
                "--name",
                name,
                "--work-dir",
                str(self.home / name),
                "--threads",
                "1",
                *(["--cheat", cheat] if cheat else []),
            ],
            env={**os.environ, "GENSYN_PRIVATE_KEY": "0x" + bytes(account.key).hex()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._procs[name], self._logs[name] = proc, log
        with open(self.home / "demo-providers.pids", "a") as pids:
            pids.write(f"{proc.pid} {name}\n")
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            if name in self.online():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"provider {name} did not come online:\n{self.log(name)}")

    def stop_provider(self, name: str) -> None:
        proc = self._procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self._logs.pop(name).close()
        deadline = time.monotonic() + 30  # it says goodbye; else its lease lapses (4 s)
        while time.monotonic() < deadline:
            try:
                if name not in self.online():
                    return
            except httpx.HTTPError:
                return  # the coordinator is gone too
            time.sleep(0.2)

    def join_once_a_task_runs(self, name: str, key: int, *, cheat: str | None = None) -> None:
        """Start provider ``name`` in the background as soon as a task is running.

        The task was taken by the provider online when it was queued; the one
        that joins now is the only other provider, so it gets the spot checks.
        """
        before = {t["id"] for t in self._tasks()}

        def join() -> None:
            try:
                self._wait_for_a_new_task_to_run(before)
                self.start_provider(name, key, cheat=cheat)
            except Exception as exc:  # reported by check(), never lost
                self._errors.append(f"{name} did not join: {exc}")

        thread = threading.Thread(target=join, name=f"join-{name}", daemon=True)
        thread.start()
        self._joiners.append(thread)

    def check(self) -> None:
        """Raise what went wrong in a background join, if anything did."""
        for thread in self._joiners:
            thread.join(timeout=_WAIT)
        self._joiners.clear()
        if self._errors:
            raise RuntimeError("; ".join(self._errors))

    def online(self) -> list[str]:
        providers = httpx.get(f"{self.url}/v1/providers", timeout=5).json()
        return [p["info"]["name"] for p in providers if p["state"] != "offline"]

    def _tasks(self) -> list[dict[str, Any]]:
        token = read_session_token(self.url)  # the coordinator lists the notebook user's own
        headers = {"Authorization": f"Bearer {token}"} if token else None
        reply = httpx.get(f"{self.url}/v1/tasks", params={"limit": 5}, headers=headers, timeout=5)
        return list(reply.json())

    def _wait_for_a_new_task_to_run(self, before: set[str]) -> None:
        deadline = time.monotonic() + 2 * _WAIT
        while time.monotonic() < deadline:
            if any(t["id"] not in before and t["provider_name"] for t in self._tasks()):
                return
            if self._stopping.wait(0.1):
                raise RuntimeError("the demo was stopped first")
        raise RuntimeError("no new task started running")

    # -- reading the chain -------------------------------------------------
    def settled_payment(self, handle: Any) -> Any:
        """``handle.payment`` once the coordinator has read how the chain settled it.

        A slashed task ends when the referee rules; the coordinator reads the
        ``FraudProven`` event of that ruling from the chain a moment later.
        """
        deadline = time.monotonic() + _WAIT
        payment = handle.payment
        while payment.outcome is None and time.monotonic() < deadline:
            time.sleep(0.5)
            payment = handle.payment
        return payment

    def who(self, address: Any) -> str:
        """``honest``, ``cheater``, ``the referee``... for an address of the demo."""
        text = str(address)
        return self._names.get(text.lower(), text)

    def address(self, name: str) -> str:
        return next(a for a, n in self._names.items() if n == name)

    def stake(self, name: str) -> int:
        """The bonded stake of provider ``name`` in wei (``TaskMarket.stakeOf``)."""
        return int(self.market.call("stakeOf", Web3.to_checksum_address(self.address(name)))[0])

    def block(self) -> int:
        return int(self.w3.eth.block_number)

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-3000:]


def _gensyn(home: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", *args],
        env={**os.environ, "GENSYN_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=_WAIT + 60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gensyn {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
