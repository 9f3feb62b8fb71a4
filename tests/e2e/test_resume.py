"""A provider SIGKILLed mid-run: the task resumes from its last uploaded checkpoint elsewhere.

A network of its own (free: a coordinator with a 3 s lease ttl and two
providers, started here), a real kernel, a real training loop. The cell
first runs uninterrupted; then the same cell runs again (the same bundle: the
model is built in the cell from captured tensors, since a captured module's
pickle differs from one capture to the next) and the provider running it is
killed once a checkpoint is on the coordinator. The cell says the provider
was lost and from which step the run resumed, finishes, and its weights,
losses and Merkle root are bit for bit those of the uninterrupted run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gensyn_jupyter.devnet import free_port

from .._devnet import Devnet
from ._faults import provider_process
from ._kernel import Kernel, started_kernel

SETUP = """\
torch.manual_seed(0)
X = torch.randn(512, 8)
Y = X @ torch.randn(8, 1) + 0.1 * torch.randn(512, 1)
torch.manual_seed(1)
model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
init = {k: v.clone() for k, v in model.state_dict().items()}
"""

CELL = """\
%%gensyn_train --checkpoint-every 5 -o {handle}
import time
model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
model.load_state_dict(init)
opt = torch.optim.Adam(model.parameters(), lr=0.01)
losses = []
for step in range(60):
    i = torch.randint(0, len(X), (32,))
    loss = torch.nn.functional.mse_loss(model(X[i]), Y[i])
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
    time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def resume_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A free network of its own: a coordinator (3 s lease ttl) and two providers."""
    home = tmp_path_factory.mktemp("gensyn-resume")
    url = f"http://127.0.0.1:{free_port()}"
    exe = [sys.executable, "-m", "gensyn_jupyter"]
    commands = {
        "coordinator": [*exe, "coordinator", "--port", url.rsplit(":", 1)[1],
                        "--data-dir", str(home / "coordinator"), "--lease-ttl", "3"],
        **{
            f"resume-{n}": [*exe, "provider", "--coordinator", url, "--name", f"resume-{n}",
                            "--work-dir", str(home / f"provider-{n}"), "--threads", "1"]
            for n in (1, 2)
        },
    }  # fmt: skip
    env = {**os.environ, "GENSYN_HOME": str(home)}
    env.pop("GENSYN_PRIVATE_KEY", None)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (home / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        deadline = time.monotonic() + 120
        while True:
            try:
                listed = httpx.get(f"{url}/v1/providers", timeout=5).json()
                if sum(p["state"] != "offline" for p in listed) == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the providers did not register within 120 s"
            time.sleep(0.2)
        yield Devnet(url=url, home=home, data_dir=home)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def resume_kernel(resume_net: Devnet) -> Iterator[Kernel]:
    with started_kernel(resume_net.env()) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch\n" + SETUP)
        assert setup.status == "ok", setup.text
        yield k


def _task(url: str, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/v1/tasks/{task_id}", timeout=10)
    response.raise_for_status()
    task: dict[str, Any] = response.json()
    return task


def _checkpointed_task(url: str, after_step: int, timeout: float = 120) -> dict[str, Any]:
    """The running task once the coordinator holds a checkpoint past ``after_step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = httpx.get(f"{url}/v1/tasks", params={"state": "running"}, timeout=10).json()
        for task in running:
            if (task.get("checkpoint_step") or 0) >= after_step:
                return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"no running task had a checkpoint past step {after_step} in time")


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"leaf {index} differs: {x} != {y} ({len(a)} and {len(b)} leaves)"
    return f"{len(a)} and {len(b)} leaves"


def test_a_killed_provider_s_run_resumes_elsewhere_bit_identical(
    resume_kernel: Kernel, resume_net: Devnet
) -> None:
    kernel, url = resume_kernel, resume_net.url
    whole = kernel.run(CELL.format(handle="whole"), timeout=240)
    assert whole.status == "ok", whole.text
    saved = kernel.run(
        "w_whole = {k: v.clone() for k, v in model.state_dict().items()}\n"
        "losses_whole = list(losses)\n"
        "print(whole.task_id)\n"
    )
    assert saved.status == "ok", saved.text
    whole_task = _task(url, saved.stdout.strip())
    assert whole_task["attempt"] == 1

    msg_id = kernel.start(CELL.format(handle="resumed"))
    task = _checkpointed_task(url, after_step=10)
    lost = task["provider_name"]
    seen_step = task["checkpoint_step"]
    victim = provider_process(lost, url)
    os.kill(victim.pid, signal.SIGKILL)

    run = kernel.read_until(msg_id, lambda run: False, timeout=240)
    assert run.error == [], run.text
    said = re.search(rf"provider {lost} lost, resumed from step (\d+) on provider (\S+)", run.text)
    assert said is not None, run.text
    assert seen_step <= int(said.group(1)) < 60

    final = _task(url, task["id"])
    assert final["state"] == "settled", final
    assert final["attempt"] == 2
    assert final["spec"]["bundle"] == whole_task["spec"]["bundle"]  # the same cell and inputs
    leaves = [c["result"]["commitment"]["leaves"] for c in (whole_task, final)]
    assert leaves[1] == leaves[0], _first_difference(*leaves)
    assert final["result"]["commitment"]["root"] == whole_task["result"]["commitment"]["root"]
    same = kernel.run(
        "print(all(torch.equal(w_whole[k], v) for k, v in model.state_dict().items()),"
        " losses == losses_whole, len(losses))"
    )
    assert same.stdout.split() == ["True", "True", "60"], same.text
