"""The simulated provider processes and kernels of ``benchmarks/load.py``, free or paid.

A provider (``python -m benchmarks._load_actors NAME URL [URL...]``) registers,
long-polls leases on the replicas (failing over when one is down), "trains"
(sleeps ``GENSYN_LOAD_TRAIN_SECONDS``, 0.02 s by default) while it heartbeats
on the provider client's route (``POST /v1/providers/{id}/heartbeat``, at once
and then every ``heartbeat_seconds`` of its registration), computes
``y = x * x``, uploads it and posts the result. On a paid network (its key in
``GENSYN_PRIVATE_KEY``, as ``gensyn provider`` reads it) it signs in with its
own key, tops its stake up to the market's minimum and commits each result on
chain (the provider's own ``Payout``) before posting it with ``commit_tx``.
It prints ``ready PROVIDER NAME`` once registered, then ``lease PROVIDER TASK``,
``commit PROVIDER TASK`` and, once each result is posted, ``beats PROVIDER N``
(heartbeats so far), flushed, for the benchmark to follow.

A kernel (:func:`submit_paid`) signs in with its account, submits a task, and
funds and signs its order (``chain.approve_task``, the headless wallet's path:
``gensyn signer`` does the same), failing over between replicas.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from gensyn_jupyter.chain import Market, approve_task, sign_in
from gensyn_jupyter.protocol import (
    ChainInfo,
    CoordinatorError,
    Lease,
    RemoteError,
    ResultManifest,
    Task,
)
from gensyn_jupyter.provider._payout import Payout

from ._replicas import job_value, request_any

__all__ = ["PaidKernel", "job_bundle_bytes", "provider_loop"]

_FAR = 3600.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def job_bundle_bytes(n: int) -> bytes:
    """Job ``n``'s bundle, as ``benchmarks._replicas.submit_job`` uploads it."""
    bundle = {
        "source": f"x = {n}\ny = x * x\n",
        "inputs": [],
        "outputs": ["y"],
        "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
    }
    return json.dumps(bundle).encode()


def _on_any(
    clients: Sequence[httpx.Client], do: Callable[[httpx.Client], Any], *, prefer: int = 0
) -> Any:
    """``do(client)`` on the first replica that answers (a refusal other than 502/503 raises)."""
    deadline = time.monotonic() + _FAR
    attempt = 0
    while True:
        client = clients[(prefer + attempt) % len(clients)]
        try:
            return do(client)
        except httpx.TransportError:
            pass
        except CoordinatorError as exc:
            if exc.status not in (502, 503):
                raise
        attempt += 1
        if time.monotonic() > deadline:
            raise TimeoutError("no replica answered")
        if attempt % len(clients) == 0:
            time.sleep(0.2)


class _Heartbeat:
    """Beats for a provider while it holds a lease (a thread of its own, its own client)."""

    def __init__(self, call: Callable[..., httpx.Response], path: str, interval: float) -> None:
        self.call, self.path, self.interval = call, path, interval
        self.held = threading.Event()
        self.beat_now = threading.Event()
        self.beats = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.held.wait()
            self.beat_now.clear()
            self.call("POST", self.path)
            self.beats += 1
            self.beat_now.wait(self.interval)  # the interval, or the next run's start

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        self.held.set()
        self.beat_now.set()  # one at the start of the run, then every interval
        try:
            yield
        finally:
            self.held.clear()


def provider_loop(
    urls: Sequence[str],
    name: str,
    stop: threading.Event,
    *,
    account: LocalAccount | None,
    train_seconds: float,
    say: Callable[[str], None],
    prefer: int = 0,
) -> None:
    """Serve tasks until ``stop`` is set (see the module's docstring)."""
    far = time.monotonic() + _FAR

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return request_any(urls, method, path, deadline=far, prefer=prefer, **kw)

    payout: Payout | None = None
    headers: dict[str, str] = {}
    if account is not None:
        chain = ChainInfo.model_validate(call("GET", "/v1/chain").json())
        payout = Payout(account=account, chain=chain, log=lambda m: say(f"log {m}"))
        payout.ensure_stake()
        clients = [httpx.Client(base_url=u, timeout=30.0) for u in urls]
        token = _on_any(clients, lambda c: sign_in(c, account).token, prefer=prefer)
        headers = {"Authorization": f"Bearer {token}"}
    info = {"name": name, "device_type": "cpu", "cpu_count": 1, "python": "3.11", "torch": "2"}
    body = call("POST", "/v1/providers", json=info, headers=headers).json()
    pid, auth = body["provider"]["id"], {"Authorization": f"Bearer {body['token']}"}
    say(f"ready {pid} {name}")
    heart = _Heartbeat(
        lambda m, p: call(m, p, headers=auth),
        f"/v1/providers/{pid}/heartbeat",
        float(body["heartbeat_seconds"]),
    )
    while not stop.is_set():
        r = call("POST", f"/v1/providers/{pid}/lease", params={"wait": 1}, headers=auth)
        if r.status_code == 204:
            continue
        r.raise_for_status()
        lease = Lease.model_validate(r.json())
        task = lease.task
        say(f"lease {pid} {task.id}")
        started = time.monotonic()
        with heart.training():
            bundle = call("GET", f"/v1/blobs/{task.spec.bundle}", headers=auth)
            found = re.match(r"x = (\d+)\n", bundle.json()["source"])
            assert found is not None, bundle.text
            time.sleep(train_seconds)
            values = json.dumps(job_value(int(found.group(1)))).encode()
            put = call("PUT", f"/v1/blobs/{_sha(values)}", content=values, headers=auth)
            assert put.status_code in (200, 201), put.text
            manifest = ResultManifest(
                values=_sha(values), steps=1, duration_s=time.monotonic() - started
            )
            if payout is not None:
                commit_tx = payout.commit(lease, manifest)
                if commit_tx is None:  # refused on chain (its reason is in the log)
                    error = RemoteError(type="CommitRefused", message="commit refused on chain")
                    manifest = ResultManifest(error=error, duration_s=manifest.duration_s)
                else:
                    say(f"commit {pid} {task.id}")
                    manifest = manifest.model_copy(update={"commit_tx": commit_tx})
        posted = call(
            "POST",
            f"/v1/leases/{lease.id}/result",
            json=manifest.model_dump(mode="json", exclude_none=True),
            headers=auth,
        )
        if posted.status_code != 200:
            say(f"log result of {task.id} refused: {posted.status_code} {posted.text[:200]}")
        say(f"beats {pid} {heart.beats}")


class PaidKernel:
    """One simulated notebook user on a paid network: its account, session and wallet."""

    def __init__(self, urls: Sequence[str], account: LocalAccount, market: Market, index: int):
        self.urls, self.account, self.market, self.index = list(urls), account, market, index
        self.clients = [httpx.Client(base_url=u, timeout=30.0) for u in self.urls]
        token = _on_any(self.clients, lambda c: sign_in(c, account).token, prefer=index)
        self.auth = {"Authorization": f"Bearer {token}"}
        for client in self.clients:
            client.headers.update(self.auth)

    def submit(self, n: int, *, deadline: float, max_seconds: int) -> str:
        """Submit job ``n``, fund its escrow and sign its order; its task id (queued)."""
        urls, prefer = self.urls, self.index % len(self.urls)
        data = job_bundle_bytes(n)
        sha = _sha(data)
        r = request_any(urls, "PUT", f"/v1/blobs/{sha}", content=data, deadline=deadline)
        assert r.status_code in (200, 201), r.text
        r = request_any(
            urls,
            "POST",
            "/v1/tasks",
            json={"bundle": sha, "max_seconds": max_seconds},
            headers=self.auth,
            deadline=deadline,
            prefer=prefer,
        )
        assert r.status_code == 201, r.text
        task = Task.model_validate(r.json())

        def approve(client: httpx.Client) -> None:
            try:
                approve_task(http=client, market=self.market, account=self.account, task=task)
            except CoordinatorError as exc:  # the first post arrived; its answer was lost
                if not (exc.status == 409 and "already has a signed order" in exc.detail):
                    raise

        _on_any(self.clients, approve, prefer=prefer)
        return task.id

    def close(self) -> None:
        for client in self.clients:
            client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks._load_actors NAME URL [URL...]``: one provider process."""
    args = sys.argv[1:] if argv is None else argv
    name, urls = args[0], args[1:]
    key = os.environ.get("GENSYN_PRIVATE_KEY")
    account = Account.from_key(key) if key else None
    train = float(os.environ.get("GENSYN_LOAD_TRAIN_SECONDS", "0.02"))

    def say(line: str) -> None:
        print(line, flush=True)

    provider_loop(urls, name, threading.Event(), account=account, train_seconds=train, say=say)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
