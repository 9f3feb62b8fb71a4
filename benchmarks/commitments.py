"""Checkpoint commitments: what they cost a run, and what a segment replay costs a verifier.

Three tables, each beside its baseline measured in the same run:

1. Loops with commitments (the worker's default: interval chosen from the
   step count, checkpoints hashed and saved) against the same cell compiled
   and run plainly, on a tiny model (the per-step cost of tracking loops and
   counting steps shows) and on the digits-sized MLP of
   ``benchmarks.training``; CPU seconds of this process (the VM is shared).
2. One checkpoint of an N-parameter MLP with Adam: hashing alone, hashing and
   saving (safetensors), against one training step of that model.
3. Replaying one segment from its checkpoint against running the whole cell.

Run: ``python -m benchmarks.commitments [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gensyn_jupyter.capture import build_bundle
from gensyn_jupyter.protocol import sha256_hex
from gensyn_jupyter.verify import (
    CheckpointStore,
    Recording,
    RunSession,
    deterministic_mode,
    replay_segment,
    seed_everything,
    state_digest,
)

from ._common import machine, print_table

__all__ = ["main"]

CELL = """\
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=BATCH, shuffle=True)
model = torch.nn.Sequential(*[
    layer for i, o in zip(WIDTHS, WIDTHS[1:]) for layer in (torch.nn.Linear(i, o), torch.nn.ReLU())
][:-1])
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(EPOCHS):
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""


def _namespace(widths: list[int], n: int, epochs: int, batch: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    return {
        "torch": torch,
        "X": torch.randn(n, widths[0], generator=gen),
        "Y": torch.randint(0, widths[-1], (n,), generator=gen),
        "WIDTHS": widths,
        "EPOCHS": epochs,
        "BATCH": batch,
    }


def _run(ns: dict[str, Any], *, record: bool, directory: Path | None) -> tuple[float, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, **ns}
    if not record:
        code = compile(CELL, "<gensyn-cell>", "exec")
        with deterministic_mode():
            seed_everything(1)
            started = time.process_time()
            exec(code, namespace)
            return time.process_time() - started, None
    recording = Recording(CELL, namespace, every=None, directory=directory, seed=1, device="cpu")
    started = time.process_time()
    with recording:
        exec(recording.code, namespace)
        commitment = recording.finish()
    return time.process_time() - started, (recording, commitment)


def _loop_table(quick: bool) -> None:
    rows = []
    cases = [
        ("tiny (4-8-2), batch 8", [4, 8, 2], 4096 if quick else 16384, 8),
        ("digits MLP (64-256-256-10), batch 64", [64, 256, 256, 10], 1797, 64),
    ]
    for label, widths, n, batch in cases:
        epochs = 2 if quick else 5
        ns = _namespace(widths, n, epochs, batch)
        plain, on, overhead = [], [], []
        for _ in range(2 if quick else 3):
            plain.append(_run(ns, record=False, directory=None)[0])
            with tempfile.TemporaryDirectory() as tmp:
                seconds, (recording, commitment) = _run(ns, record=True, directory=Path(tmp))
            on.append(seconds)
            overhead.append(recording.overhead_seconds)
        steps = commitment.leaves[-1].step
        rows.append(
            [
                label,
                steps,
                len(commitment.leaves),
                commitment.checkpoint_every,
                min(plain),
                min(on),
                min(overhead),
                min(on) / min(plain),
            ]
        )
    print_table(
        "Commitments on (default interval, checkpoints saved) vs the plain cell",
        [
            "loop",
            "steps",
            "leaves",
            "k",
            "plain CPU s",
            "recorded CPU s",
            "of which hashing+saving s",
            "ratio",
        ],
        rows,
    )


def _best(fn: Any, repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``fn()`` (this VM is shared)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _checkpoint_row(millions: int) -> list[object]:
    width = int((millions * 1e6 / 3) ** 0.5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(3)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(32, width)

    def step() -> None:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()

    step()
    step_s = _best(step)
    session = RunSession({"model": model, "opt": opt}, device="cpu")
    hash_s = _best(lambda: state_digest(session.take()[0]))
    tree, _found = session.take()
    digest = state_digest(tree)
    state_bytes = sum(p.numel() * 4 for p in model.parameters()) * 4  # params, grads, 2 moments
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp))
        save_s = _best(lambda: store.save(1, "boundary", tree, {}, digest))
    blob = bytes(state_bytes)
    sha_s = _best(lambda: hashlib.sha256(blob).digest())
    return [
        f"{millions}M params + Adam",
        state_bytes / 1e6,
        step_s * 1e3,
        hash_s * 1e3,
        sha_s * 1e3,
        save_s * 1e3,
        (hash_s + save_s) / step_s,
    ]


def _checkpoint_table(quick: bool) -> None:
    rows = [_checkpoint_row(millions) for millions in ([1, 10] if quick else [1, 10, 50])]
    print_table(
        "One checkpoint against one training step (batch 32; best of 3)",
        [
            "state",
            "MB",
            "step ms",
            "hash ms",
            "bare sha256 of as many bytes ms",
            "save ms",
            "checkpoint / step",
        ],
        rows,
    )


def _replay_table(quick: bool) -> None:
    ns = _namespace([64, 256, 256, 10], 1797, 2 if quick else 4, 64)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepared = build_bundle(CELL, ns)
        bundle_json = prepared.bundle_json()
        blobs = {**prepared.blobs, sha256_hex(bundle_json): bundle_json}
        namespace: dict[str, Any] = dict(ns)
        seconds, (_recording, commitment) = _run(namespace, record=True, directory=root)
        leaves = commitment.leaves
        middle = len(leaves) // 2
        result = replay_segment(
            prepared.bundle,
            blobs.__getitem__,
            commitment=commitment,
            store=CheckpointStore(root),
            start=middle,
        )
        whole = replay_segment(
            prepared.bundle,
            blobs.__getitem__,
            commitment=commitment,
            store=CheckpointStore(root),
            start=0,
            end=len(leaves) - 1,
        )
    assert result.matches(commitment) and whole.matches(commitment)
    print_table(
        "Replaying one segment vs the whole cell (digits MLP)",
        ["replay", "steps run", "seconds", "matches"],
        [
            [
                f"leaf {middle} -> {middle + 1} (k = {commitment.checkpoint_every})",
                result.steps_run,
                result.seconds,
                result.matches(commitment),
            ],
            [
                f"leaf 0 -> {len(leaves) - 1} (whole run)",
                whole.steps_run,
                whole.seconds,
                whole.matches(commitment),
            ],
            ["the recorded run itself", leaves[-1].step, seconds, True],
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.commitments")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: a loaded small VM's figures are not thread contention)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine())
    _loop_table(args.quick)
    _checkpoint_table(args.quick)
    _replay_table(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
