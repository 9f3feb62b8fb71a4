"""Skip the wall-clock wait of a verified task's challenge window (e2e tests on a devnet).

A verified spot check settles only once its challenge window closed on chain
(60 s on these devnets, so that a verifier can replay and challenge a cheater
in time on a loaded CI machine). Once a task is ``verified``, nothing can
challenge it any more; :class:`WindowCloser` then moves the dev chain's clock
forward (``evm_increaseTime``, which anvil and the embedded chain both
support) and the coordinator's keeper finalizes on its next pass. The window
itself is still enforced by the contract; only the minute of waiting goes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gensyn_jupyter.config import read_devnet_state

from .._devnet import Devnet

__all__ = ["WindowCloser"]


class WindowCloser(threading.Thread):
    """Moves the chain's clock by its challenge window once per verified task awaiting settlement.

    ``home`` is the devnet's ``GENSYN_HOME`` (the devnet may start later);
    ``task_id`` limits it to one task, and it returns once that one is done.
    """

    def __init__(self, *, home: Path, task_id: str | None = None, timeout: float = 600) -> None:
        super().__init__(daemon=True)
        self.home, self.task_id, self.timeout = home, task_id, timeout
        self.closed: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._halt.is_set() and time.monotonic() < deadline:
            try:
                if self._pass():
                    return
            except httpx.HTTPError:
                pass  # the devnet is starting or stopping
            self._halt.wait(0.2)

    def _pass(self) -> bool:
        """One look at the tasks; True when the awaited task needs nothing more."""
        state = read_devnet_state(self.home / "devnet")
        if state is None:
            return False
        devnet = Devnet(url=state.url, home=self.home, data_dir=self.home / "devnet")
        if self.task_id is not None:
            reply = httpx.get(f"{devnet.url}/v1/tasks/{self.task_id}", headers=devnet.auth())
            tasks: list[dict[str, Any]] = [reply.raise_for_status().json()]
        else:
            reply = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 20}, headers=devnet.auth())
            tasks = list(reply.raise_for_status().json())
        for task in tasks:
            payment = task.get("payment") or {}
            if (
                task["state"] == "verified"
                and task["id"] not in self.closed
                and payment.get("challenge_ends_at") is not None
                and payment.get("outcome") is None
            ):
                self._advance(devnet.url)
                self.closed.append(task["id"])
        if self.task_id is None:
            return False
        return self.task_id in self.closed or tasks[0]["state"] in _DONE

    def _advance(self, url: str) -> None:
        chain = httpx.get(f"{url}/v1/chain").raise_for_status().json()
        seconds = int(chain["challenge_window_s"])
        for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            httpx.post(chain["rpc_url"], json=body, timeout=30).raise_for_status()


_DONE = {"settled", "slashed", "failed", "cancelled", "expired"}
