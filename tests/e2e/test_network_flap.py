"""The line between a provider and the coordinator goes down for 10 s mid-run (a TCP proxy
on loopback resets every connection and refuses new ones): the provider trains on,
buffers its metrics, reconnects, and the cell ends with every loss point exactly once.

The lease outlives the gap: the coordinator's lease TTL is 15 s and the provider
heartbeats every 2 s, so the last renewal before the cut is at most 2 s old and the
first after it comes within the client's 2 s backoff of the line coming back (12 s
< 15 s). A gap longer than the TTL loses the lease (see docs/operations.md).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from ._faults import TcpProxy, free_port, start_coordinator, start_provider, wait_for_provider
from ._kernel import started_kernel

_STEPS = 300
_GAP = 10.0

_SETUP = """\
%load_ext gensyn_jupyter
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
X = torch.randn(32, 4)
"""

_CELL = f"""\
%%gensyn_train --verify none
import time
for i in range({_STEPS}):
    loss = (model(X) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if i % 10 == 0:
        print('step', i, flush=True)
    time.sleep(0.05)
"""


def test_a_10s_network_cut_loses_no_metric_and_the_task_completes(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "coordinator" / "data"
    data.parent.mkdir()
    coordinator = start_coordinator(data, port, lease_ttl=15)
    proxy = TcpProxy(port)
    provider = start_provider(proxy.url, tmp_path / "provider", "flappy")
    env = {"GENSYN_HOME": str(tmp_path / "home"), "GENSYN_NETWORK": url}
    try:
        with started_kernel(env) as kernel:
            setup = kernel.run(_SETUP)
            assert setup.status == "ok", setup.text
            wait_for_provider(url, "flappy")
            msg_id = kernel.start(_CELL)
            before = kernel.read_until(msg_id, lambda run: "step 20" in run.stdout, timeout=120)
            (task,) = httpx.get(f"{url}/v1/tasks").json()
            connections = proxy.connections
            proxy.drop_for(_GAP)
            time.sleep(_GAP - 1)
            # the line is still down, and the coordinator still holds the provider's lease
            assert httpx.get(f"{url}/v1/tasks/{task['id']}").json()["state"] == "running"
            rest = kernel.read_until(msg_id, lambda run: False, timeout=180)
            assert rest.status == "idle" and not rest.error, rest.text
            assert proxy.connections > connections  # the provider came back through the proxy
            check = kernel.run(
                "steps, losses = _gensyn.metric('loss')\n"
                "print(_gensyn.status, len(steps), steps == list(range(1, len(steps) + 1)))\n"
            )
            assert check.stdout.split() == ["settled", str(_STEPS), "True"], check.text
            text = before.stdout + rest.stdout
            printed = re.findall(r"^step (\d+)$", text, re.M)
            assert [int(n) for n in printed] == list(range(0, _STEPS, 10)), text
        assert "stopped responding" not in provider.output
    finally:
        provider.stop()
        proxy.close()
        coordinator.stop()
