"""``--verify spot`` on a devnet of its own: an honest run is verified, a cheater is slashed.

Real parts: anvil with the market (a 60 s challenge window, so a verifier can
replay and challenge in time), the coordinator, the devnet's referee (dev key
8), two provider processes started here (an honest one and one started with
``--cheat wrong-data``), the signer, and a real kernel. Which provider runs a
task is steered by which one is online when it is queued; the other one
verifies it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market, dev_accounts
from gensyn_jupyter.config import read_devnet_state

from .._devnet import Devnet, gensyn
from ._kernel import CellRun, Kernel, started_kernel
from ._window import WindowCloser

pytestmark = pytest.mark.xdist_group("spot")

HONEST = dev_accounts(3)[2]  # the devnet's provider-1 key: no devnet provider runs here
CHEATER = dev_accounts(4)[3]
CELL = (
    "%%gensyn_train --verify spot -o {name}\n"
    "loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=16, "
    "shuffle=True)\n"
    "for epoch in range(6):\n"
    "    for xb, yb in loader:\n"
    "        loss = torch.nn.functional.mse_loss(model(xb), yb)\n"
    "        opt.zero_grad(); loss.backward(); opt.step()\n"
)
SETUP = (
    "torch.manual_seed(0)\n"
    "X = torch.randn(256, 4); Y = X.sum(1, keepdim=True)\n"
    "model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
)


class _Providers:
    def __init__(self, url: str, work: Path) -> None:
        self.url = url
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, key: str, *extra: str) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gensyn_jupyter",
                "provider",
                "--coordinator",
                self.url,
                "--name",
                name,
                "--work-dir",
                str(self.work / name),
                "--threads",
                "1",
                *extra,
            ],
            env={**os.environ, "GENSYN_PRIVATE_KEY": key},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            online = [
                p for p in httpx.get(f"{self.url}/v1/providers").json() if p["state"] != "offline"
            ]
            if any(p["info"]["name"] == name for p in online):
                return
            time.sleep(0.2)
        raise AssertionError(f"provider {name} did not register:\n{self.log(name)}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:  # not started by an earlier test of this module
            return
        proc.terminate()
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture(scope="module")
def spot_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devnet, _Providers]]:
    home = tmp_path_factory.mktemp("gensyn-spot")
    env = {"GENSYN_HOME": str(home)}
    gensyn(
        "devnet",
        "up",
        "--detach",
        "--providers",
        "0",
        "--challenge-window",
        "60",  # a verifier must replay and challenge within it, also on a loaded 2-core CI
        "--lease-ttl",
        "4",
        env=env,
    )
    state = read_devnet_state(home / "devnet")
    assert state is not None
    providers = _Providers(state.url, home)
    try:
        yield Devnet(url=state.url, home=home, data_dir=home / "devnet"), providers
    finally:
        providers.close()
        gensyn("devnet", "down", env=env)


@pytest.fixture(scope="module")
def spot_kernel(spot_net: tuple[Devnet, _Providers]) -> Iterator[Kernel]:
    devnet, _providers = spot_net
    with started_kernel(devnet.env()) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch\n" + SETUP)
        assert setup.status == "ok", setup.text
        yield k


def _task(devnet: Devnet, task_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{devnet.url}/v1/tasks/{task_id}", headers=devnet.auth())
    task: dict[str, Any] = reply.json()
    return task


def _wait_running(devnet: Devnet, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 5}, headers=devnet.auth())
        for task in listed.json():
            if task["state"] == "running":
                return dict(task)
        time.sleep(0.1)
    raise AssertionError("no task started running")


def _key(account: Any) -> str:
    return "0x" + bytes(account.key).hex()


class _Cell(threading.Thread):
    """Runs a cell in the kernel while the test steers the providers."""

    def __init__(self, kernel: Kernel, code: str) -> None:
        super().__init__(daemon=True)
        self.kernel, self.code = kernel, code
        self.run_: CellRun | None = None

    def run(self) -> None:
        self.run_ = self.kernel.run(self.code, timeout=300)

    def result(self) -> CellRun:
        self.join(timeout=320)
        assert self.run_ is not None, "the cell did not finish"
        return self.run_


def test_an_honest_spot_checked_run_is_verified_then_settled(
    spot_net: tuple[Devnet, _Providers], spot_kernel: Kernel
) -> None:
    devnet, providers = spot_net
    providers.start("honest", _key(HONEST))
    cell = _Cell(spot_kernel, CELL.format(name="honest_run"))
    cell.start()
    task = _wait_running(devnet)
    assert task["provider_name"] == "honest"
    closer = WindowCloser(home=devnet.home, task_id=task["id"])
    closer.start()  # once verified, the chain's clock skips the window (see _window.py)
    providers.start("cheater", _key(CHEATER), "--cheat", "wrong-data")  # verifies honestly
    run = cell.result()
    closer.stop()
    assert run.status == "ok", run.text + providers.log("honest") + providers.log("cheater")
    assert "every leaf reproduced bit for bit" in run.text, run.text
    shown = spot_kernel.run("print(honest_run.status)")
    assert shown.stdout.strip() == "settled"
    final = _task(devnet, task["id"])
    verification = final["verification"]
    assert verification["outcome"] == "verified"
    assert verification["sampled"], verification
    assert all(v["matches"] for v in verification["verdicts"].values())
    assert set(verification["verifiers"].values()) == {"cheater"}
    for verdict in verification["verdicts"].values():
        assert verdict["signer"].lower() == CHEATER.address.lower()
    # the receipt: shown by the cell, kept in the output's metadata, checkable by anyone
    assert "receipt for " + task["id"] + ": settled" in run.text, run.text
    path = devnet.home / "honest-receipt.json"
    saved = spot_kernel.run(f"honest_run.save_receipt({str(path)!r})")
    assert saved.status == "ok", saved.text
    checked = _gensyn_verify(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for line in ("ok   merkle root", "ok   provider's commit", "ok   outcome", "ok   spot verdict"):
        assert line in checked.stdout, checked.stdout
    forged = json.loads(path.read_text())
    first = next(iter(forged["verification"]["verdicts"].values()))
    first["matches"] = not first["matches"]  # a verdict the verifier never signed
    forged["commitment"]["leaves"][1]["leaf"] = "0x" + "ab" * 32
    path.write_text(json.dumps(forged))
    refused = _gensyn_verify(path)
    assert refused.returncode == 1
    assert "FAIL merkle root" in refused.stdout and "FAIL spot verdict" in refused.stdout


def _gensyn_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_cheater_is_caught_by_a_spot_check_and_slashed_on_chain(
    spot_net: tuple[Devnet, _Providers], spot_kernel: Kernel
) -> None:
    devnet, providers = spot_net
    info = httpx.get(f"{devnet.url}/v1/chain").json()
    w3 = Web3(HTTPProvider(info["rpc_url"]))
    market = Market(w3=w3, address=info["market"])
    providers.stop("honest")  # the cheater alone takes the task
    _wait_offline(devnet.url, "honest")
    if "cheater" not in providers.procs:
        providers.start("cheater", _key(CHEATER), "--cheat", "wrong-data")
    stake_before = int(market.call("stakeOf", CHEATER.address)[0])
    first_block = int(w3.eth.block_number)
    cell = _Cell(spot_kernel, CELL.format(name="cheated"))
    cell.start()
    task = _wait_running(devnet)
    assert task["provider_name"] == "cheater"
    providers.start("honest", _key(HONEST))  # now the verifier
    run = cell.result()
    final = _task(devnet, task["id"])
    assert final["state"] == "slashed", (final, providers.log("honest"), providers.log("cheater"))
    assert run.status == "error"  # nothing trained is loaded into the kernel
    assert "was caught cheating" in run.text and "escrow is refunded" in run.text, run.text
    verification = final["verification"]
    assert verification["outcome"] == "fraud"
    assert not verification["ruling"]["matches"]
    assert any(not v["matches"] for v in verification["verdicts"].values())
    events = market.events(from_block=first_block)
    challenged = [e for e in events if e.name == "TaskChallenged"]
    proven = [e for e in events if e.name == "FraudProven"]
    assert [str(e.args["challenger"]).lower() for e in challenged] == [HONEST.address.lower()]
    assert len(proven) == 1
    args = proven[0].args
    assert str(args["cheater"]).lower() == CHEATER.address.lower()
    assert str(args["whistleblower"]).lower() == HONEST.address.lower()
    slashed = int(args["slashed"])
    assert slashed > 0
    assert int(args["toWhistleblower"]) == slashed // 4
    stake_after = int(market.call("stakeOf", CHEATER.address)[0])
    assert stake_before - stake_after == slashed
    deadline = time.monotonic() + 30  # the chain watcher applies FraudProven on its next pass
    while final["payment"]["outcome"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        final = _task(devnet, task["id"])
    assert final["payment"]["outcome"] == "slashed"
    path = devnet.home / "cheated-receipt.json"
    saved = spot_kernel.run(f"cheated.save_receipt({str(path)!r})")
    assert saved.status == "ok", saved.text
    checked = _gensyn_verify(path)
    assert "ok   outcome" in checked.stdout and "did NOT reproduce" in checked.stdout, (
        checked.stdout
    )


def _wait_offline(url: str, name: str, timeout: float = 30) -> None:
    """Until no row named ``name`` is online (a stopped daemon's row stays a few seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [p for p in httpx.get(f"{url}/v1/providers").json() if p["info"]["name"] == name]
        if all(p["state"] == "offline" for p in rows):
            return
        time.sleep(0.2)
    raise AssertionError(f"the stopped {name} is still listed online")


def test_replication_sends_the_first_divergent_segment_to_the_referee_who_slashes_the_cheater(
    spot_net: tuple[Devnet, _Providers], spot_kernel: Kernel
) -> None:
    devnet, providers = spot_net
    info = httpx.get(f"{devnet.url}/v1/chain").json()
    w3 = Web3(HTTPProvider(info["rpc_url"]))
    market = Market(w3=w3, address=info["market"])
    if "honest" not in providers.procs:  # each test stands alone (the devnet may be new)
        providers.start("honest", _key(HONEST))
    providers.stop("cheater")  # slashed to 0 before: a restart stakes again
    _wait_offline(devnet.url, "cheater")
    providers.start("cheater", _key(CHEATER), "--cheat", "wrong-data")
    stake_before = int(market.call("stakeOf", CHEATER.address)[0])
    assert stake_before > 0
    first_block = int(w3.eth.block_number)
    run = spot_kernel.run(CELL.format(name="replicated").replace("spot", "replicate"), timeout=300)
    tasks = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 1}, headers=devnet.auth()).json()
    final = tasks[0]
    verification = final["verification"]
    assert verification["mode"] == "replicate", final
    events = market.events(from_block=first_block)
    names = [e.name for e in events]
    assert "TaskDisputed" in names, (names, providers.log("honest"), providers.log("cheater"))
    proven = [e for e in events if e.name == "FraudProven"]
    assert len(proven) == 1, names
    assert str(proven[0].args["cheater"]).lower() == CHEATER.address.lower()
    assert str(proven[0].args["whistleblower"]).lower() == HONEST.address.lower()
    assert int(market.call("stakeOf", CHEATER.address)[0]) < stake_before
    if final["provider_name"] == "honest":  # the cheater ran the replica: the user keeps the run
        assert final["state"] == "settled", final
        assert run.status == "ok", run.text
        assert "the replica on cheater cheated" in run.text, run.text
    else:  # the cheater ran first: nothing is loaded
        assert final["state"] == "slashed", final
        assert run.status == "error" and "caught cheating" in run.text, run.text
