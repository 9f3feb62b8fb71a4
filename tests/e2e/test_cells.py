"""What a user sees in a cell: errors, preflight, interrupts, magics."""

from __future__ import annotations

import httpx
import pytest

from .._devnet import Devnet
from ._kernel import Kernel


def _task_count(devnet: Devnet) -> int:
    listed = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 1000}, headers=devnet.auth())
    return len(listed.json())


def test_remote_exception_points_at_the_cell_line(kernel: Kernel) -> None:
    run = kernel.run("%%gensyn_train\na = torch.ones(2)\nprint('before the error')\nb = a[5]\n")
    assert run.status == "error"
    assert "before the error" in run.stdout
    rendered = "\n".join(run.error)
    assert "Cell line 4, in <cell>" in rendered
    assert "b = a[5]" in rendered
    assert "IndexError" in rendered
    result = kernel.run("print(_gensyn.status, _gensyn.error)")
    assert result.stdout.startswith("failed IndexError")


def test_unserialisable_input_is_refused_before_anything_is_sent(
    kernel: Kernel, devnet: Devnet, tmp_path: object
) -> None:
    before = _task_count(devnet)
    run = kernel.run(
        "fh = open('/dev/null')\ndef reads(): return fh.read()\nmodel = torch.nn.Linear(2, 2)\n"
    )
    assert run.status == "ok"
    run = kernel.run("%%gensyn_train\nx = reads()\nmodel.weight.data.zero_()\n")
    assert run.status == "error"
    rendered = "\n".join(run.error)
    assert "nothing was sent" in rendered and "`reads`" in rendered
    assert _task_count(devnet) == before


def test_values_come_back_and_new_names_are_bound(kernel: Kernel) -> None:
    kernel.run("w = torch.zeros(3)\nw_id = id(w)\ncounts = [1]")
    run = kernel.run(
        "%%gensyn_train -o res\n"
        "w += 2\n"
        "counts.append(2)\n"
        "total = float(w.sum())\n"
        "name = 'trained'\n"
    )
    assert run.status == "ok", run.text
    check = kernel.run("print(id(w) == w_id, w.tolist(), counts, total, name, res.status)")
    assert check.stdout.strip() == "True [2.0, 2.0, 2.0] [1, 2] 6.0 trained settled"


def test_interrupt_cancels_the_remote_task(kernel: Kernel, devnet: Devnet) -> None:
    msg_id = kernel.start(
        "%%gensyn_train\n"
        "import time\n"
        "for i in range(600):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    kernel.read_until(msg_id, lambda run: "tick 3" in run.stdout, timeout=120)
    kernel.km.interrupt_kernel()
    run = kernel.read_until(msg_id, lambda run: False, timeout=60)
    rendered = "\n".join(run.error)
    assert "cancelled" in rendered and "nothing was paid" in rendered
    task_id = kernel.run("print(_gensyn.task_id)").stdout.strip()
    task = httpx.get(f"{devnet.url}/v1/tasks/{task_id}", headers=devnet.auth()).json()
    assert task["state"] == "cancelled"


def test_gensyn_line_magics(kernel: Kernel) -> None:
    assert kernel.run("%%gensyn_train -o listed\nz = 1\n").status == "ok"
    providers = kernel.run("%gensyn providers")
    listed_names = [line.split()[1] for line in providers.stdout.splitlines()[1:] if line.strip()]
    assert sorted(listed_names) == ["devnet-1", "devnet-2", "devnet-referee"], providers.stdout
    tasks = kernel.run("%gensyn tasks")
    task_id = kernel.run("print(listed.task_id)").stdout.strip()
    assert any(task_id in line and "settled" in line for line in tasks.stdout.splitlines())
    status = kernel.run("%gensyn status")
    assert "providers online" in status.stdout
    helped = kernel.run("%gensyn --help")
    assert "devnet up|down|status" in helped.stdout
    helped = kernel.run("%%gensyn_train --help\npass")
    assert "--verify" in helped.stdout and "--gpus" in helped.stdout


@pytest.mark.parametrize(
    "line", ["--verify trust-me", "--verify spot --checkpoint-every 0", "--gpus 0", "-o 1bad"]
)
def test_bad_magic_options_say_what_is_wrong(kernel: Kernel, line: str) -> None:
    run = kernel.run(f"%%gensyn_train {line}\npass")
    assert run.status == "error"
    assert run.error or "UsageError" in run.stderr, run.text  # argparse's refusals are usage


def test_the_cell_checks_the_commitment_against_the_weights_it_got(kernel: Kernel) -> None:
    kernel.run(
        "model = torch.nn.Linear(4, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "X, Y = torch.randn(32, 4), torch.randn(32, 1)"
    )
    run = kernel.run(
        "%%gensyn_train --checkpoint-every 4\n"
        "for step in range(10):\n"
        "    loss = torch.nn.functional.mse_loss(model(X), Y)\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
    )
    assert run.status == "ok", run.text
    assert "the returned model matches the last checkpoint" in run.text, run.text
    check = kernel.run("c = _gensyn.commitment_check\nprint(c.ok, c.matched, c.checkpoints > 2)")
    assert check.stdout.strip() == "True ['model'] True"
