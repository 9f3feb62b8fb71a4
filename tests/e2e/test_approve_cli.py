"""``gensyn approve``: a person approves one task from a terminal; the kernel never sees the key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx

from gensyn_jupyter.chain import dev_accounts, sign_in

from .._devnet import Devnet

GENSYN = [sys.executable, "-m", "gensyn_jupyter"]
_BUNDLE = json.dumps(
    {
        "source": "total = 1 + 1\n",
        "inputs": [],
        "outputs": ["total"],
        "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
    }
).encode()


def _approve(devnet: Devnet, task_id: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GENSYN, "approve", task_id, "--network", devnet.url],
        env={**os.environ, **devnet.env(), "GENSYN_PRIVATE_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_task_of_another_account_waits_until_its_owner_approves_it_from_a_terminal(
    devnet: Devnet,
) -> None:
    owner = dev_accounts(6)[5]  # not the devnet signer's account: nobody approves it unasked
    key = "0x" + bytes(owner.key).hex()
    sha = hashlib.sha256(_BUNDLE).hexdigest()
    with httpx.Client(base_url=devnet.url, timeout=30) as http:
        http.put(f"/v1/blobs/{sha}", content=_BUNDLE).raise_for_status()
        token = sign_in(http, owner).token
        reply = http.post(
            "/v1/tasks",
            json={"bundle": sha, "max_seconds": 60},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]
        time.sleep(1.0)  # the devnet's signer had its chance: it is not the owner's wallet
        http.headers["Authorization"] = f"Bearer {token}"  # the owner reads its task
        waiting = http.get(f"/v1/tasks/{task_id}").json()
        assert waiting["state"] == "awaiting_approval"
        assert (
            f"gensyn approve {task_id}"
            in http.get(f"/v1/tasks/{task_id}/events", params={"format": "json"}).json()[-1][
                "data"
            ]["message"]
        )

        stranger = _approve(devnet, task_id, "0x" + bytes(dev_accounts(5)[4].key).hex())
        assert stranger.returncode == 1
        stranger_address = dev_accounts(5)[4].address  # the task is not among its tasks
        assert f"not found among the tasks of {stranger_address}" in stranger.stderr

        approved = _approve(devnet, task_id, key)
        assert approved.returncode == 0, approved.stderr
        assert f"approved {task_id}: 0.00006 ETH in escrow" in approved.stdout

        again = _approve(devnet, task_id, key)
        assert again.returncode == 1 and "not awaiting approval" in again.stderr

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            task = http.get(f"/v1/tasks/{task_id}").json()
            if task["state"] == "settled":
                break
            time.sleep(0.2)
        assert task["state"] == "settled", task
        assert task["payment"]["provider_paid_wei"] + task["payment"]["refunded_wei"] == 6 * 10**13
