"""The live monitor end to end: every point arrives, snapshots are saved, async + attach."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from .._devnet import Devnet
from ._kernel import Kernel, started_kernel

LOOP_2000 = (
    "%%gensyn_train -o run2k\n"
    "for step in range(2000):\n"
    "    loss = ((w * xs).sum() - 3.0) ** 2\n"
    "    opt.zero_grad(); loss.backward(); opt.step()\n"
)
SETUP = (
    "w = torch.zeros(4, requires_grad=True)\n"
    "xs = torch.ones(4)\n"
    "opt = torch.optim.SGD([w], lr=0.001)\n"
)


def test_every_metric_point_reaches_the_kernel_in_order(kernel: Kernel) -> None:
    assert kernel.run(SETUP).status == "ok"
    run = kernel.run(LOOP_2000)
    assert run.status == "ok", run.text
    check = kernel.run(
        "steps, values = run2k.metric('loss')\n"
        "print(steps == list(range(1, 2001)), len(values), values[0] > values[-1])"
    )
    assert check.stdout.strip() == "True 2000 True"


@pytest.mark.timeout(300)
def test_saved_notebook_shows_the_final_curve_without_a_kernel(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in devnet.env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext gensyn_jupyter\nimport torch\n" + SETUP),
        nbformat.v4.new_code_cell(LOOP_2000),
    ]
    NotebookClient(nb, timeout=240, kernel_name="python3").execute(env=dict(os.environ))
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    bundles = [o["data"] for o in saved.cells[1].outputs if "data" in o]
    html = [b["text/html"] for b in bundles if "text/html" in b]
    assert html, f"no text/html output in {[list(b) for b in bundles]}"
    assert "<svg" in html[-1] and "loss" in html[-1]
    assert any("settled" in b.get("text/plain", "") for b in bundles)


@pytest.mark.timeout(300)
def test_async_task_survives_a_kernel_restart_and_attach_recovers_its_history(
    devnet: Devnet,
) -> None:
    with started_kernel(devnet.env()) as k:
        assert k.run("%load_ext gensyn_jupyter\nimport torch\n" + SETUP).status == "ok"
        run = k.run(
            LOOP_2000.replace("-o run2k", "--async -o job")
            .replace("opt.step()\n", "opt.step()\n    time.sleep(0.002)\n")
            .replace("for step", "import time\nfor step")
        )
        assert run.status == "ok", run.text
        assert "running in the background as job" in run.stdout
        task_id = k.run("print(job.task_id)").stdout.strip()
        k.km.restart_kernel(now=True)
        k.kc.wait_for_ready(timeout=60)
        assert k.run("%load_ext gensyn_jupyter").status == "ok"
        attached = k.run(f"%gensyn attach {task_id} -o again")
        assert attached.status == "ok", attached.text
        check = k.run(
            "again.result(timeout=120)\n"
            "steps, _ = again.metric('loss')\n"
            "print(again.status, steps == list(range(1, 2001)))"
        )
        assert check.stdout.strip() == "settled True", check.text


def test_interrupt_leaves_the_task_cancelled_within_5_seconds(
    kernel: Kernel, devnet: Devnet
) -> None:
    msg_id = kernel.start(
        "%%gensyn_train -o slow\n"
        "import time\n"
        "for i in range(600):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    kernel.read_until(msg_id, lambda run: "tick 2" in run.stdout, timeout=120)
    kernel.km.interrupt_kernel()
    interrupted = time.monotonic()
    task_id = None
    state = None
    while time.monotonic() - interrupted < 5:
        tasks = httpx.get(
            f"{devnet.url}/v1/tasks", params={"limit": 1}, headers=devnet.auth()
        ).json()
        task_id, state = tasks[0]["id"], tasks[0]["state"]
        if state == "cancelled":
            break
        time.sleep(0.1)
    assert state == "cancelled", f"{task_id} still {state} 5 s after the interrupt"
    run = kernel.read_until(msg_id, lambda run: False, timeout=30)
    assert "cancelled" in "\n".join(run.error)
