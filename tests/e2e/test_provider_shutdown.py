"""``gensyn provider`` on SIGTERM: it finishes the running task within its grace period,
or hands it back as failed with a message saying why; either way it takes no new lease."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from ._faults import free_port, start_coordinator, start_provider, wait_for_provider
from ._kernel import started_kernel

_SETUP = """\
%load_ext gensyn_jupyter
import torch
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
X = torch.randn(32, 4)
"""


def _cell(steps: int) -> str:
    return (
        "%%gensyn_train --verify none\n"
        "import time\n"
        f"for i in range({steps}):\n"
        "    loss = (model(X) ** 2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    print('step', i, flush=True)\n"
        "    time.sleep(0.1)\n"
    )


def test_sigterm_finishes_the_task_or_hands_it_back_and_stops_polling(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "coordinator" / "data"
    data.parent.mkdir()
    coordinator = start_coordinator(data, port)
    patient = start_provider(url, tmp_path / "patient", "patient", extra=("--grace", "60"))
    hasty = None
    env = {"GENSYN_HOME": str(tmp_path / "home"), "GENSYN_NETWORK": url}
    try:
        with started_kernel(env) as kernel:
            assert kernel.run(_SETUP).status == "ok"
            wait_for_provider(url, "patient")

            # 1. within the grace period: the task finishes, every step counted
            msg_id = kernel.start(_cell(30))
            kernel.read_until(msg_id, lambda run: "step 2\n" in run.stdout, timeout=120)
            # a second provider joins now (the first is busy, so it cannot take this task)
            hasty = start_provider(url, tmp_path / "hasty", "hasty", extra=("--grace", "1"))
            patient.signal(signal.SIGTERM)
            finished = kernel.read_until(msg_id, lambda run: False, timeout=120)
            assert finished.status == "idle" and not finished.error, finished.text
            done = kernel.run("print(_gensyn.status, len(_gensyn.losses), _gensyn.provider)")
            assert done.stdout.split() == ["settled", "30", "patient"], done.text
            assert patient.wait(30) == 0
            assert "no new lease is taken" in patient.output

            # 2. past the grace period: the task is stopped and handed back, saying why
            wait_for_provider(url, "hasty")
            msg_id = kernel.start(_cell(600))
            kernel.read_until(msg_id, lambda run: "step 5\n" in run.stdout, timeout=120)
            hasty.signal(signal.SIGTERM)
            failed = kernel.read_until(msg_id, lambda run: False, timeout=120)
            text = failed.text
            assert "provider hasty was shut down (SIGTERM)" in text, text
            assert "grace period of 1 s" in text and "run the cell again" in text
            assert hasty.wait(30) == 0
            tasks = httpx.get(f"{url}/v1/tasks").json()
            assert sorted(t["state"] for t in tasks) == ["failed", "settled"]
    finally:
        for proc in (patient, hasty):
            if proc is not None:
                proc.stop()
        coordinator.stop()
