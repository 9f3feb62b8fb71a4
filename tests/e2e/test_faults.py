"""A provider dies mid-task: the task fails with a clear message, the network keeps serving."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil

from .._devnet import Devnet
from ._faults import provider_process
from ._kernel import Kernel


def test_provider_killed_mid_task_fails_it_and_the_network_keeps_serving(
    kernel: Kernel, devnet: Devnet
) -> None:
    msg_id = kernel.start(
        "%%gensyn_train -o doomed\n"
        "import time\n"
        "for i in range(600):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    seen = kernel.read_until(msg_id, lambda run: "tick 2" in run.stdout, timeout=120)
    provider = seen.stdout.split("running on provider ")[1].split()[0]
    victim = provider_process(provider, devnet.url)
    worker_pids = [c.pid for c in victim.children(recursive=True)]
    os.kill(victim.pid, signal.SIGKILL)

    run = kernel.read_until(msg_id, lambda run: False, timeout=60)
    rendered = "\n".join(run.error)
    assert f"provider {provider} stopped responding" in rendered

    # the worker died with its provider: no orphan keeps training
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in worker_pids):
        time.sleep(0.1)
    alive = [
        p for p in worker_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ]
    assert alive == []

    assert httpx.get(f"{devnet.url}/v1/health").status_code == 200
    again = kernel.run("%%gensyn_train\nafter_crash = int(torch.ones(3).sum())\n")
    assert again.status == "ok", again.text
    assert kernel.run("print(after_crash)").stdout.strip() == "3"
