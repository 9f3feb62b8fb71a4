"""Checkpoint commitments on a GPU: are they reproducible, and what do they cost there.

A small CNN (convolutions, batch norm, dropout) with Adam, a step LR
schedule and a shuffling DataLoader is captured as the kernel would, loaded
as the worker loads it, and recorded with commitments on ``--device``
(``cuda`` by default, ``cpu`` to try it anywhere). Printed:

- the root of the same run recorded twice in this process and once in a new
  process (equal roots: the run reproduces bit for bit in this determinism
  class);
- a replay of one middle segment from its checkpoint (matches the committed
  leaf or not);
- the relative distance ``||w_a - w_b|| / ||w_b||`` of the final weights
  between this device and the CPU, and between two runs on this device with
  deterministic algorithms off: the scale a cross-class verifier's threshold
  has to allow for honest work, against a one-step perturbation of 1e-3;
- steps/s with deterministic algorithms on (as the worker runs) against the
  default torch settings, in the same run.

Run: ``python -m benchmarks.gpu_verify [--device cuda|cpu] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import builtins
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import machine, print_table

__all__ = ["main"]

SETUP = """
import torch
g = torch.Generator().manual_seed(0)
X = torch.randn(N, 1, 16, 16, generator=g)
Y = (X[:, 0, :4, :4].sum((1, 2)) > 0).long() + 2 * (X[:, 0, 8:, 8:].mean((1, 2)) > 0).long()
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(32 * 64, 4))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
"""

CELL = """
import torch.nn.functional as F
model.to(DEVICE)
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True)
for epoch in range(EPOCHS):
    for xb, yb in loader:
        xb, yb = xb.to(DEVICE), yb.to(DEVICE)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
"""


def _kernel_namespace(device: str, epochs: int, n: int) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "__main__", "DEVICE": device, "EPOCHS": epochs, "N": n}
    exec(SETUP, ns)
    return ns


class _Captured:
    """The cell captured once (bundle + blobs), loaded afresh for every run."""

    def __init__(self, device: str, epochs: int, n: int) -> None:
        from gensyn_jupyter.capture import build_bundle
        from gensyn_jupyter.protocol import sha256_hex

        prepared = build_bundle(CELL, _kernel_namespace(device, epochs, n))
        prepared.bundle.checkpoint_every = None
        self.bundle = prepared.bundle
        bundle_json = prepared.bundle_json()
        self.blobs = {**prepared.blobs, sha256_hex(bundle_json): bundle_json}

    def namespace(self) -> dict[str, Any]:
        from gensyn_jupyter.capture import load_inputs

        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        ns.update(load_inputs(self.bundle, self.blobs.__getitem__))
        return ns


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _record(captured: _Captured, device: str, directory: Path) -> tuple[Any, Any, float]:
    """Run with commitments on, as the worker does: (commitment, final weights, seconds)."""
    from gensyn_jupyter.verify import Recording

    ns = captured.namespace()
    recording = Recording(CELL, ns, every=None, directory=directory, seed=1, device=device)
    started = time.perf_counter()
    with recording:
        exec(recording.code, ns)
        _sync(device)
        commitment = recording.finish()
    seconds = time.perf_counter() - started
    return commitment, _flat(ns["model"]), seconds


def _plain(captured: _Captured, device: str, *, deterministic: bool) -> tuple[Any, float]:
    """Run the plain cell (no commitments): (final weights, seconds)."""
    import contextlib

    from gensyn_jupyter.verify import deterministic_mode, seed_everything

    ns = captured.namespace()
    code = compile(CELL, "<gensyn-cell>", "exec")
    with deterministic_mode() if deterministic else contextlib.nullcontext():
        seed_everything(1)
        started = time.perf_counter()
        exec(code, ns)
        _sync(device)
        seconds = time.perf_counter() - started
    return _flat(ns["model"]), seconds


def _flat(model: Any) -> Any:
    import torch

    return torch.cat([p.detach().double().cpu().flatten() for p in model.parameters()])


def _distance(a: Any, b: Any) -> str:
    return f"{float((a - b).norm() / b.norm()):.2e}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _child(device: str, epochs: int, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        commitment, _w, _s = _record(_Captured(device, epochs, n), device, Path(tmp))
    return {"root": commitment.root}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.gpu_verify")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.device, args.epochs, args.n)))
        return 0
    import os

    import torch

    from gensyn_jupyter.verify import CUBLAS_WORKSPACE_CONFIG, CheckpointStore, replay_segment

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (run with --device cpu to try it)")
        return 0
    print(machine())
    if device.startswith("cuda"):
        print(
            f"gpu: {torch.cuda.get_device_name(0)}, cuda {torch.version.cuda}, "
            f"cudnn {torch.backends.cudnn.version()}"
        )
    captured = _Captured(device, args.epochs, args.n)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first, w_first, s_first = _record(captured, device, root / "a")
        second, _w, s_second = _record(captured, device, root / "b")
        steps = first.leaves[-1].step
        rows.append(
            [
                "run, recorded twice in one process",
                _yes(first.root == second.root),
                f"{len(first.leaves)} leaves, k = {first.checkpoint_every}, {steps} steps",
            ]
        )
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.gpu_verify",
                "--child",
                "--device",
                device,
                "--epochs",
                str(args.epochs),
                "--n",
                str(args.n),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode == 0:
            other_root = json.loads(child.stdout.strip().splitlines()[-1])["root"]
            rows.append(["run, recorded in a new process", _yes(other_root == first.root), ""])
        else:
            rows.append(["run, recorded in a new process", "ERROR", child.stderr[-300:]])
        middle = len(first.leaves) // 2
        replay = replay_segment(
            captured.bundle,
            captured.blobs.__getitem__,
            commitment=first,
            store=CheckpointStore(root / "a"),
            start=middle,
            device=device,
        )
        rows.append(
            [
                f"replay leaf {middle} -> {middle + 1} from its checkpoint",
                _yes(replay.matches(first)),
                f"{replay.steps_run} steps in {replay.seconds:.3f} s, "
                f"fast-forwarded: {replay.fast_forwarded}",
            ]
        )
    print_table(
        f"Bitwise reproducibility of committed runs on {device}",
        ["what", "same root / leaf", "detail"],
        rows,
    )

    w_cpu, _s = _plain(_Captured("cpu", args.epochs, args.n), "cpu", deterministic=True)
    w_nd1, s_nd = _plain(captured, device, deterministic=False)
    w_nd2, _s2 = _plain(captured, device, deterministic=False)
    w_det, s_det = _plain(captured, device, deterministic=True)
    w_det2, s_det2 = _plain(captured, device, deterministic=True)
    _w3, s_nd2 = _plain(captured, device, deterministic=False)
    perturbed = w_det.clone()
    perturbed += 1e-3 * perturbed.abs().mean() * torch.randn_like(perturbed)
    print_table(
        "Distance of the final weights, ||a - b|| / ||b||",
        ["a", "b", "distance"],
        [
            [f"{device}, deterministic", "cpu, deterministic", _distance(w_det, w_cpu)],
            [f"{device}, default torch", f"{device}, default torch", _distance(w_nd1, w_nd2)],
            [f"{device}, deterministic", f"{device}, deterministic", _distance(w_det, w_det2)],
            [f"{device}, deterministic", "the recorded run", _distance(w_det, w_first)],
            [
                "noise 1e-3 x mean |w| added once",
                f"{device}, deterministic",
                _distance(perturbed, w_det),
            ],
        ],
    )
    det_s, nd_s = min(s_det, s_det2), min(s_nd, s_nd2)
    print_table(
        f"Throughput on {device} ({steps} steps, best of 2)",
        ["mode", "seconds", "steps/s", "ratio to default torch"],
        [
            ["default torch", nd_s, steps / nd_s, 1.0],
            ["deterministic algorithms", det_s, steps / det_s, nd_s / det_s],
            [
                "deterministic + commitments (recorded)",
                min(s_first, s_second),
                steps / min(s_first, s_second),
                nd_s / min(s_first, s_second),
            ],
        ],
    )
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"peak GPU memory in this process: {peak:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
