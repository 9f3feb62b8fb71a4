"""The coordinator is SIGKILLed while a cell trains and streams its loss; restarted on the
same port and database, it recovers the task and its lease, the provider and the kernel
reconnect, and the cell ends with every loss point exactly once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from ._faults import free_port, sigkill, start_coordinator, start_provider, wait_for_provider
from ._kernel import started_kernel

_STEPS = 200

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


def test_coordinator_killed_mid_run_recovers_and_loses_no_metric(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "coordinator" / "data"
    data.parent.mkdir()
    coordinator = start_coordinator(data, port)
    provider = start_provider(url, tmp_path / "provider", "phoenix")
    env = {"GENSYN_HOME": str(tmp_path / "home"), "GENSYN_NETWORK": url}
    try:
        with started_kernel(env) as kernel:
            setup = kernel.run(_SETUP)
            assert setup.status == "ok", setup.text
            wait_for_provider(url, "phoenix")
            msg_id = kernel.start(_CELL)
            before = kernel.read_until(msg_id, lambda run: "step 30" in run.stdout, timeout=120)

            (task,) = httpx.get(f"{url}/v1/tasks").json()
            sigkill(coordinator)
            time.sleep(1)  # the worker trains on (the restart takes seconds too); metrics wait
            coordinator = start_coordinator(data, port)

            # recovered from the database: the same task on the same provider, still running
            # (or, on a slow machine, just finished: the worker trains on while it is down)
            again = httpx.get(f"{url}/v1/tasks/{task['id']}").json()
            assert again["state"] in ("running", "settled"), again
            assert again["provider_name"] == task["provider_name"] == "phoenix"

            rest = kernel.read_until(msg_id, lambda run: False, timeout=180)
            assert rest.status == "idle" and not rest.error, rest.text
            check = kernel.run(
                "steps, losses = _gensyn.metric('loss')\n"
                "print(_gensyn.status, len(steps), steps == list(range(1, len(steps) + 1)))\n"
            )
            assert check.stdout.split() == ["settled", str(_STEPS), "True"], check.text
            # the cell's own output came through once each, across the restart
            printed = re.findall(r"^step (\d+)$", before.stdout + rest.stdout, re.M)
            assert [int(n) for n in printed] == list(range(0, _STEPS, 10)), rest.text
    finally:
        provider.stop()
        coordinator.stop()
