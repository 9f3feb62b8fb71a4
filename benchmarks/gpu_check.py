"""The CUDA path of the provider, for real, on a machine with a GPU.

Starts a coordinator and one provider (``--device auto``: CUDA) on loopback,
then plays the kernel of a laptop without a GPU: the model, the optimizer and
the data are on the CPU, ``device = "cpu"``, and the cell uses a shuffling
DataLoader. Prints what the cell printed (the provider says what it moved to
the GPU), checks that the weights came back trained onto the CPU objects, and
prints the remote steps/s beside the same loop run here on the GPU directly.

Run: ``python -m benchmarks.gpu_check`` (exit code 0 when every check holds).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from gensyn_jupyter.kernel import CoordinatorClient, TrainOptions, train_cell

SETUP = """
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
device = "cpu"   # what a laptop kernel without a GPU evaluates
X = torch.randn(8192, 256)
y = (X[:, :10].sum(1) > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 2))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)
counter = torch.zeros(4)
"""

CELL = """
import time
t0 = time.perf_counter()
for epoch in range(EPOCHS):
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
    print(f"epoch {epoch}: loss {loss.item():.4f} on {next(model.parameters()).device}")
    counter += 1
if torch.cuda.is_available():
    torch.cuda.synchronize()
loop_seconds = time.perf_counter() - t0  # the loop alone: no CUDA start, no data load
import os, socket
worker_uid = os.getuid()  # the sandbox's own uid when the provider runs as root
try:
    socket.create_connection(("10.255.255.1", 80), timeout=2).close()
    net_probe = "connected"
except OSError as exc:
    net_probe = f"{type(exc).__name__}: {exc}"
"""


def free_port() -> int:
    # not gensyn_jupyter.devnet's: that imports web3, which the GPU image lacks
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _namespace(epochs: int) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "__main__", "EPOCHS": epochs}
    exec(SETUP, ns)
    return ns


def main() -> int:
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", flush=True)
    if torch.cuda.is_available():
        print(f"gpu: {torch.cuda.get_device_name(0)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gensyn-gpu-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = [sys.executable, "-m", "gensyn_jupyter"]
    names = ("coordinator.log", "provider.log", "verifier.log", "referee.log")
    logs = [open(work / name, "wb") for name in names]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [*exe, "coordinator", "--port", str(port), "--data-dir", str(work / "c")],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        *(
            subprocess.Popen(
                [
                    *exe,
                    "provider",
                    "--coordinator",
                    url,
                    "--name",
                    name,
                    "--work-dir",
                    str(work / name),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for name, log, extra in (
                ("gpu-box", logs[1], []),
                ("gpu-box-2", logs[2], []),  # the other one verifies spot checks
                ("referee", logs[3], ["--referee"]),
            )
        ),
    ]
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if len(httpx.get(f"{url}/v1/providers", timeout=2).json()) >= 3:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        client = CoordinatorClient(base_url=url)
        print(
            "providers:",
            [
                (p.info.name, p.info.device_type, [g.name for g in p.info.gpus])
                for p in client.list_providers()
            ],
            flush=True,
        )
        epochs = 20
        ns = _namespace(epochs)
        before = ns["model"][0].weight.detach().clone()
        model_id = id(ns["model"])
        counter = ns["counter"]
        started = time.perf_counter()
        handle = train_cell(
            CELL,
            ns,
            options=TrainOptions(),
            client=client,
            say=lambda m: print(f"[gensyn] {m}", flush=True),
        )
        wall = time.perf_counter() - started
        weight = ns["model"][0].weight
        checks = {
            "same model object": id(ns["model"]) == model_id,
            "weights changed": not torch.equal(before, weight),
            "weights back on the cpu": weight.device.type == "cpu",
            "ran on cuda": (handle.device or "").startswith("cuda") or "cuda" in handle.stdout,
            "device var stays cpu in the kernel": ns["device"] == "cpu",
            "captured tensor updated in place on the cpu": ns["counter"] is counter
            and counter.device.type == "cpu"
            and counter.tolist() == [float(epochs)] * 4,
        }
        print(
            f"the CUDA cell ran as uid {ns.get('worker_uid')}; "
            f"an outside address: {ns.get('net_probe')}"
        )
        if os.geteuid() == 0:  # a root provider sandboxes its workers (docs/sandbox.md)
            checks["cuda cell ran sandboxed (own uid, no network)"] = (
                ns.get("worker_uid") not in (None, 0) and ns.get("net_probe") != "connected"
            )
        for name, ok in checks.items():
            print(f"check {name}: {'ok' if ok else 'FAILED'}")
            if not ok:
                failures.append(name)
        steps = handle.steps
        remote_rate = steps / ns["loop_seconds"]
        peak = handle.gpu_peak_bytes
        print(
            f"peak GPU memory of the cell on the provider: "
            f"{'n/a' if peak is None else f'{peak / 2**20:.1f} MiB'}"
        )
        # the same cell without checkpoint commitments: their cost on this device
        plain = _namespace(epochs)
        bare = train_cell(
            CELL,
            plain,
            options=TrainOptions(checkpoint_every=0),
            client=client,
            say=lambda m: None,
        )
        bare_rate = bare.steps / plain["loop_seconds"]
        print(
            f"remote without commitments: {bare_rate:.0f} steps/s; "
            f"with the default commitments {remote_rate:.0f} ({remote_rate / bare_rate:.2f})"
        )
        # --verify spot: the other GPU provider replays a sampled segment on its GPU
        spotted = _namespace(epochs)
        checked = train_cell(
            CELL, spotted, options=TrainOptions(verify="spot"), client=client, say=lambda m: None
        )
        verification = client.get_task(checked.task_id).verification
        assert verification is not None
        for segment, verdict in verification.verdicts.items():
            print(
                f"spot check: segment {segment} of {verification.segments} replayed by "
                f"{verification.verifiers.get(segment)}: "
                f"{'bit for bit' if verdict.matches else 'MISMATCH'} ({verdict.note}, "
                f"{verdict.seconds:.2f} s)"
            )
        checks_spot = verification.outcome == "verified" and checked.status == "settled"
        print(f"check spot verification on cuda: {'ok' if checks_spot else 'FAILED'}")
        if not checks_spot:
            failures.append("spot verification")
        # the same loop, here, directly on the GPU (the baseline of the same run)
        local = _namespace(epochs)
        if torch.cuda.is_available():
            local["device"] = "cuda"
            local["model"].to("cuda")
        exec(CELL.replace("print(", "(lambda *a, **k: None)("), local)
        local_rate = steps / local["loop_seconds"]
        print(
            f"remote: {steps} steps, the loop {remote_rate:.0f} steps/s; the task "
            f"{handle.duration:.2f} s on the provider, {wall:.2f} s cell wall time"
        )
        print(
            f"local, same process, same GPU: {local_rate:.0f} steps/s; "
            f"ratio remote/local {remote_rate / local_rate:.2f} with commitments, "
            f"{bare_rate / local_rate:.2f} without"
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        for log in logs:
            log.close()
        for line in (work / "provider.log").read_text(errors="replace").splitlines():
            if "sandbox" in line.lower():
                print(f"provider log: {line}")
        if failures or os.environ.get("GENSYN_SHOW_LOGS"):
            for name in names:
                print(f"--- {name}\n" + (work / name).read_text(errors="replace")[-3000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
