"""``gensyn provider``: register, heartbeat, long-poll leases, run them, forever."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Literal

import httpx
from eth_account.signers.local import LocalAccount

from ..chain import MarketError, chain_info, sign_in
from ..protocol import CoordinatorError, ProviderInfo
from ._client import ProviderClient
from ._hardware import detect_hardware
from ._payout import Payout
from ._pool import WorkerPool, worker_environment
from ._runner import TaskRunner
from ._sandbox import Sandbox, SandboxPolicy

__all__ = ["run_provider"]

_LEASE_WAIT_SECONDS = 20.0
_MAX_BACKOFF = 5.0


class _Daemon:
    def __init__(
        self,
        *,
        client: ProviderClient,
        info: ProviderInfo,
        runner: TaskRunner,
        stop: threading.Event,
        account: LocalAccount | None = None,
    ) -> None:
        self.account = account
        self.client = client
        self.info = info
        self.runner = runner
        self.stop = stop
        self.reregister = threading.Event()
        self.draining = threading.Event()
        """Set by SIGTERM while a task runs: finish it, take no new lease."""
        self.busy: str | None = None
        """The task running now, if any."""

    def log(self, message: str) -> None:
        _log(self.info.name, message)

    def register(self) -> None:
        backoff = 0.2
        while not self.stop.is_set():
            try:
                reg = self.client.register(self.info, self._sign_in())
            except (httpx.HTTPError, CoordinatorError) as exc:
                self.log(f"cannot register yet ({exc}); retrying in {backoff:.1f} s")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            self.log(f"registered as {reg.provider.id} ({self.info.device_type})")
            self.reregister.clear()
            return

    def _sign_in(self) -> str | None:
        """On a paid network: sign in with the provider's key and keep the stake up."""
        chain = chain_info(self.client.http)
        if chain is None:
            return None
        if self.account is None:
            self.log(
                "this network pays providers on chain, but no key is set "
                "(GENSYN_PRIVATE_KEY or GENSYN_KEYSTORE): only free tasks will be offered"
            )
            return None
        if self.runner.payout is None:
            self.runner.payout = Payout(account=self.account, chain=chain, log=self.log)
        try:
            if self.info.role != "referee":  # the referee rules; it runs no task
                self.runner.payout.ensure_stake()
        except (MarketError, ValueError) as exc:
            self.log(f"could not stake: {exc}")
        return sign_in(self.client.http, self.account).token

    def _collect_earnings(self) -> None:
        payout = self.runner.payout
        if payout is None:
            return
        try:
            earned = payout.withdraw()
        except Exception as exc:  # the node may be down for a moment
            self.log(f"could not withdraw earnings: {exc}")
            return
        if earned:
            self.log(f"withdrew {earned} wei of earnings")

    def heartbeat_loop(self) -> None:
        beats = 0
        while not self.stop.is_set():
            registration = self.client.registration
            interval = registration.heartbeat_seconds if registration else 1.0
            if self.stop.wait(interval):
                return
            if registration is None:
                continue
            try:
                beat = self.client.heartbeat()
            except CoordinatorError as exc:
                if exc.status in (401, 404):
                    self.reregister.set()
                self.log(f"heartbeat refused: {exc.detail}")
                continue
            except httpx.HTTPError as exc:
                self.log(f"heartbeat failed: {exc}")
                continue
            for task_id in beat.cancel:
                self.log(f"{task_id} cancelled by its owner")
                self.runner.cancel(task_id)
            beats += 1
            if beats % 3 == 0:
                self._collect_earnings()

    def lease_loop(self) -> None:
        backoff = 0.2
        while not self.stop.is_set() and not self.draining.is_set():
            if self.reregister.is_set():
                self.register()
            try:
                lease = self.client.lease(wait=_LEASE_WAIT_SECONDS)
            except CoordinatorError as exc:
                if exc.status in (401, 404):
                    self.reregister.set()
                self.log(f"lease refused: {exc.detail}")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            except httpx.HTTPError as exc:
                self.log(f"lost the coordinator ({exc}); retrying in {backoff:.1f} s")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.2
            if lease is not None:
                what = f"{lease.job.kind} job {lease.job.id} on " if lease.job else ""
                self.log(f"leased {what}{lease.task.id}")
                self.busy = lease.task.id
                try:
                    self.runner.run(lease)
                finally:
                    self.busy = None

    def drain(self, grace: float) -> None:
        """SIGTERM while a task runs: poll no more; after ``grace`` s, stop it and hand it back."""
        self.draining.set()
        task = self.busy
        self.log(f"stopping: {task} may finish within {grace:g} s; no new lease is taken")
        reason = (
            f"provider {self.info.name} was shut down (SIGTERM) and the task did not finish "
            f"within its grace period of {grace:g} s; run the cell again to run it elsewhere"
        )

        def give_up() -> None:
            if self.stop.wait(grace):
                return
            while self.busy is not None and not self.stop.is_set():
                self.runner.abandon_current(reason)
                self.stop.wait(0.5)

        threading.Thread(target=give_up, name="gensyn-grace", daemon=True).start()


def run_provider(
    *,
    coordinator: str,
    work_dir: Path,
    name: str | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    threads: int | None = None,
    account: LocalAccount | None = None,
    cheat: str | None = None,
    referee: bool = False,
    grace_seconds: float = 30.0,
    sandbox: SandboxPolicy | None = None,
) -> None:
    """Serve leases from ``coordinator`` until SIGINT or SIGTERM.

    SIGTERM lets a running task finish (for ``grace_seconds``; then it is
    stopped and posted as failed, saying why) and takes no new lease; a second
    SIGTERM, or SIGINT, stops at once.

    Parameters
    ----------
    coordinator
        Base URL of the coordinator, e.g. ``http://127.0.0.1:8765``.
    work_dir
        Blob cache, task directories and the workers' private homes.
    name
        Name shown to users (defaults to the host name).
    device
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    threads
        torch threads per worker (default: torch's own choice).
    account
        The provider's own key, paid for its work on a network with escrow.
    cheat
        Tests and demos only: run every task dishonestly this way (see ``._cheats``).
    referee
        Take only referee jobs (re-execute challenged segments and rule on chain);
        the key must be the market's referee.
    grace_seconds
        On SIGTERM, how long the running task may go on before it is handed back.
    sandbox
        How workers are confined (default: :class:`SandboxPolicy`'s defaults; see
        ``docs/sandbox.md``); the log says what this machine could not provide.
    """
    info = detect_hardware(name=name, device=device)
    if referee:
        info = info.model_copy(update={"role": "referee"})
    client = ProviderClient(base_url=coordinator)
    stop = threading.Event()
    confinement = Sandbox(
        sandbox or SandboxPolicy(), work_dir=work_dir, log=lambda message: _log(info.name, message)
    )
    pool = WorkerPool(
        env=worker_environment(home=work_dir / "home", threads=threads),
        cwd=work_dir,
        sandbox=confinement,
    )
    pool.replenish()
    runner = TaskRunner(
        client=client,
        info=info,
        work_dir=work_dir,
        pool=pool,
        threads=threads,
        log=lambda message: _log(info.name, message),
    )
    runner.cheat = cheat
    daemon = _Daemon(client=client, info=info, runner=runner, stop=stop, account=account)

    def _on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM and daemon.busy is not None and not daemon.draining.is_set():
            daemon.drain(grace_seconds)
            return
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    try:
        daemon.register()
        threading.Thread(target=daemon.heartbeat_loop, daemon=True).start()
        daemon.lease_loop()
    except KeyboardInterrupt:
        daemon.log("stopping")
    finally:
        stop.set()
        daemon.runner.kill_current()
        pool.close()
        client.close()


def _log(name: str, message: str) -> None:
    print(f"[provider {name}] {message}", file=sys.stderr, flush=True)
