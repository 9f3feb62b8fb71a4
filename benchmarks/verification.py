"""Verification costs: what a verifier, a referee and determinism cost, and a devnet's spot check.

The first three tables run in this process with the real
:mod:`gensyn_jupyter.verify` package (no devnet, no chain). The task is the digits MLP of
``benchmarks.training`` (scikit-learn's packaged digits, 64-256-256-10,
Adam, batches of 64 from a shuffling DataLoader), captured with the
kernel's own ``build_bundle`` (model and optimizer included), loaded as the
worker loads it and recorded with commitments on (the worker's default
interval, checkpoints saved). Four tables:

1. **spot**: a verifier replays a fraction ``q`` (10 %, at least one) of the
   run's segments, each from its own checkpoint, sampled with a fixed seed;
   replay CPU seconds and optimizer steps against the recorded run's.
2. **replicate**: a second run of the same bundle is perturbed once (noise of
   1e-3 x mean |w| added to every parameter in an optimizer-step hook at a
   chosen step); ``first_divergent_leaf`` walks the two Merkle trees to the
   first leaf that differs, and the referee replays just that segment from the
   last agreed checkpoint: steps replayed, bytes fetched (the checkpoint's
   files) against the bundle's, seconds.
3. **determinism**: the same plain cell with ``deterministic_mode()`` on and
   off, best of 4 (alternating which runs first, after a warm-up), steps/s.
4. **devnet** (full run only): a free devnet (no chain) with two providers
   and the referee; three ``--verify spot`` tasks of the same MLP (after one
   to warm the workers): the time from ``committed`` to ``verified`` (the
   coordinator's state events) against the run itself (``running`` to
   ``committed``). On a paid network the commit transaction and the challenge
   window come on top; not measured here.

Times of the first three are CPU seconds of this process (the VM is
shared), torch with one thread unless ``--threads`` says otherwise; the
devnet's are wall-clock, from the coordinator's events.

Run: ``python -m benchmarks.verification [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import math
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import machine, print_table

__all__ = ["main", "run"]

SPOT_RATE = 0.10
"""Fraction of the segments a spot verifier replays (at least one)."""

SAMPLE_SEED = 2026
"""Fixed seed of the benchmark's sample (on chain: keccak(commit block hash ‖ root))."""

PERTURB_SCALE = 1e-3
"""Noise added once by the 'cheating' replica, times mean |w| of each parameter."""

SETUP = """
import torch
from sklearn.datasets import load_digits
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0
Y = torch.tensor(digits.target, dtype=torch.long)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
"""

CELL = """
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True)
for epoch in range(EPOCHS):
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
"""


class _Task:
    """The cell captured once (bundle + blobs); every run loads its inputs afresh."""

    def __init__(self, epochs: int) -> None:
        from gensyn_jupyter.capture import build_bundle
        from gensyn_jupyter.protocol import sha256_hex

        ns: dict[str, Any] = {"__name__": "__main__", "EPOCHS": epochs}
        exec(SETUP, ns)
        prepared = build_bundle(CELL, ns)
        prepared.bundle.checkpoint_every = None  # the worker's default interval
        self.bundle = prepared.bundle
        self.bundle_bytes = prepared.nbytes
        bundle_json = prepared.bundle_json()
        self.blobs = {**prepared.blobs, sha256_hex(bundle_json): bundle_json}

    def read_blob(self, sha: str) -> bytes:
        return self.blobs[sha]

    def namespace(self) -> dict[str, Any]:
        from gensyn_jupyter.capture import load_inputs

        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        ns.update(load_inputs(self.bundle, self.read_blob))
        return ns


@contextlib.contextmanager
def _perturbed_at(step: int, scale: float) -> Iterator[None]:
    """Add ``scale`` x mean |w| Gaussian noise to every parameter after optimizer step ``step``.

    Its own generator: the run's RNG streams are not touched, only the weights.
    """
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = 0
    gen = torch.Generator().manual_seed(12345)

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        nonlocal count
        count += 1
        if count != step:
            return
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
                    p.add_(noise * (scale * p.abs().mean()))

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _record(task: _Task, directory: Path, *, perturb_step: int | None = None) -> tuple[Any, float]:
    """A run with commitments, as the worker records it: (commitment, CPU seconds)."""
    from gensyn_jupyter.verify import Recording

    ns = task.namespace()
    recording = Recording(CELL, ns, every=None, directory=directory, seed=1, device="cpu")
    perturb = (
        _perturbed_at(perturb_step, PERTURB_SCALE)
        if perturb_step is not None
        else contextlib.nullcontext()
    )
    started = time.process_time()
    with perturb, recording:
        exec(recording.code, ns)
        commitment = recording.finish()
    seconds = time.process_time() - started
    if commitment is None:
        raise RuntimeError(f"the run has no commitment: {recording.failure}")
    return commitment, seconds


def _replay(task: _Task, commitment: Any, store_dir: Path, start: int) -> tuple[Any, float]:
    """Replay segment ``start`` -> ``start + 1``: (result, CPU seconds)."""
    from gensyn_jupyter.verify import CheckpointStore, replay_segment

    started = time.process_time()
    result = replay_segment(
        task.bundle,
        task.read_blob,
        commitment=commitment,
        store=CheckpointStore(store_dir),
        start=start,
    )
    return result, time.process_time() - started


def _spot_table(quick: bool) -> None:
    task = _Task(epochs=6 if quick else 40)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        commitment, train_s = _record(task, root)
        leaves = commitment.leaves
        steps = leaves[-1].step
        n = len(leaves) - 1  # segment j runs leaf j -> leaf j + 1
        m = max(1, math.ceil(SPOT_RATE * n))
        sample = sorted(random.Random(SAMPLE_SEED).sample(range(n), m))
        replay_s, replay_steps, matched = 0.0, 0, 0
        for j in sample:
            result, seconds = _replay(task, commitment, root, j)
            replay_s += seconds
            replay_steps += result.steps_run
            matched += result.matches(commitment)
    print_table(
        f"spot: a verifier replays q = {SPOT_RATE:.0%} of the segments (digits MLP, "
        f"{steps} steps, k = {commitment.checkpoint_every})",
        ["figure", "run (provider)", "replay (verifier)", "replay / run"],
        [
            ["segments", n, f"{m} sampled: {sample}", m / n],
            ["optimizer steps", steps, replay_steps, replay_steps / steps],
            ["CPU seconds", train_s, replay_s, replay_s / train_s],
            ["leaves matched", "", f"{matched} of {m}", ""],
        ],
    )


def _replicate_table(quick: bool) -> None:
    from gensyn_jupyter.verify import CheckpointStore, MerkleTree, first_divergent_leaf

    task = _Task(epochs=4 if quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        honest, honest_s = _record(task, root / "honest")
        steps = honest.leaves[-1].step
        perturb_step = int(steps * 0.45)
        cheat, _cheat_s = _record(task, root / "cheat", perturb_step=perturb_step)
        trees = [
            MerkleTree([bytes.fromhex(leaf.leaf[2:]) for leaf in c.leaves]) for c in (honest, cheat)
        ]
        count = len(honest.leaves)
        found = first_divergent_leaf(count, trees[0].node, trees[1].node)
        if found is None:
            raise RuntimeError("the perturbed run committed the same root")
        agreed = found.index - 1  # the last leaf both replicas committed alike
        leaf = honest.leaves[agreed]
        stem = CheckpointStore.stem(leaf.step, leaf.kind)
        fetched = sum(
            (root / "honest" / (stem + suffix)).stat().st_size
            for suffix in (".safetensors", ".json")
        )
        result, referee_s = _replay(task, honest, root / "honest", agreed)
        replayed = "0x" + (result.leaf or b"").hex()
        verdict = (
            "replica 2 cheated"
            if replayed == honest.leaves[found.index].leaf
            and replayed != cheat.leaves[found.index].leaf
            else "undecided"
        )
    log_bound = math.ceil(math.log2(count)) + 1
    print_table(
        f"replicate: the referee's cost of a dispute (digits MLP, {steps} steps, "
        f"k = {honest.checkpoint_every}, noise of {PERTURB_SCALE:g} x mean |w| after step "
        f"{perturb_step} of replica 2)",
        ["figure", "whole run", "dispute", "dispute / run"],
        [
            [
                "first divergent leaf (Merkle walk)",
                f"{count} leaves",
                f"leaf {found.index} (step {honest.leaves[found.index].step}), "
                f"{found.comparisons} comparisons (bound {log_bound})",
                "",
            ],
            [
                "optimizer steps the referee replays",
                steps,
                result.steps_run,
                result.steps_run / steps,
            ],
            [
                "bytes: the bundle (run) vs the checkpoint the referee fetches (dispute)",
                task.bundle_bytes,
                fetched,
                fetched / task.bundle_bytes,
            ],
            ["CPU seconds", honest_s, referee_s, referee_s / honest_s],
            ["verdict", "", verdict, ""],
        ],
    )


def _plain_seconds(task: _Task, *, deterministic: bool) -> float:
    from gensyn_jupyter.verify import deterministic_mode, seed_everything

    ns = task.namespace()
    code = compile(CELL, "<gensyn-cell>", "exec")
    with deterministic_mode() if deterministic else contextlib.nullcontext():
        seed_everything(1)
        started = time.process_time()
        exec(code, ns)
        return time.process_time() - started


def _determinism_table(quick: bool) -> None:
    epochs = 3 if quick else 20
    task = _Task(epochs=epochs)
    steps = epochs * math.ceil(1797 / 64)
    _plain_seconds(task, deterministic=False)  # warm-up: the first run in a process is slower
    default, deterministic = [], []
    for i in range(4):  # alternate which goes first: order alone moved the ratio by ~8 %
        for det in (True, False) if i % 2 == 0 else (False, True):
            (deterministic if det else default).append(_plain_seconds(task, deterministic=det))
    base = min(default)
    print_table(
        f"determinism: the same plain cell, deterministic mode on vs off (digits MLP, "
        f"{steps} steps, best of 4, order alternated, after a warm-up)",
        ["mode", "CPU seconds", "steps/s", "ratio to default torch"],
        [
            ["default torch", base, steps / base, 1.0],
            [
                "deterministic_mode()",
                min(deterministic),
                steps / min(deterministic),
                base / min(deterministic),
            ],
        ],
    )


DEVNET_CELL = """
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True)
for epoch in range(EPOCHS):
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
"""


def _state_times(client: Any, task_id: str) -> dict[str, float]:
    """When the task first entered each state (the coordinator's event timestamps)."""
    times: dict[str, float] = {}
    for event in client.events(task_id):
        if event.kind == "state":
            times.setdefault(str(event.data["state"]), event.ts)
    return times


def _devnet_table(quick: bool) -> None:
    """A free devnet (no chain): a spot task's time from commit to verified (full run only)."""
    if quick:
        print_table(
            "devnet: time from commit to verified",
            ["figure", "value"],
            [["commit -> verified, spot", "full run only (a devnet takes a minute to start)"]],
        )
        return
    from gensyn_jupyter.kernel import CoordinatorClient, TrainOptions, train_cell

    from ._common import running_devnet

    rounds = 3
    rows: list[list[object]] = []
    with running_devnet(providers=2, chain="none") as devnet:
        client = CoordinatorClient(base_url=devnet.url)
        try:
            for i in range(rounds + 1):  # the first warms both providers' workers up
                ns: dict[str, Any] = {"__name__": "__main__", "EPOCHS": 6}
                exec(SETUP, ns)
                with contextlib.redirect_stdout(io.StringIO()):  # the task's progress lines
                    handle = train_cell(
                        DEVNET_CELL,
                        ns,
                        options=TrainOptions(verify="spot"),
                        client=client,
                        say=lambda _: None,
                    )
                times = _state_times(client, handle.task_id)
                task = client.get_task(handle.task_id)
                verification = task.verification
                if i == 0:
                    continue
                if "verified" not in times or verification is None:
                    rows.append([f"task {handle.task_id}", task.state.value, "", "", "", ""])
                    continue
                rows.append(
                    [
                        f"{verification.segments} segments, {len(verification.sampled)} sampled",
                        times["committed"] - times["running"],
                        times["verified"] - times["committed"],
                        (times["verified"] - times["committed"])
                        / (times["committed"] - times["running"]),
                        times["settled"] - times["verified"] if "settled" in times else "",
                        verification.outcome,
                    ]
                )
        finally:
            client.close()
    print_table(
        "devnet (free network, 2 providers + referee, spot): time from commit to verified",
        [
            "task",
            "running -> committed s",
            "committed -> verified s",
            "verify / run",
            "verified -> settled s",
            "outcome",
        ],
        rows,
    )
    print(
        "paid network (anvil): add the commit transaction and the challenge window "
        "before settlement; not measured here"
    )


def run(quick: bool = False, threads: int = 1) -> None:
    """Print the four tables (``quick``: smaller runs, under a minute on 2 cores)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        print(machine())
        _spot_table(quick)
        _replicate_table(quick)
        _determinism_table(quick)
        _devnet_table(quick)
    finally:
        torch.set_num_threads(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.verification")
    parser.add_argument("--quick", action="store_true", help="small runs (CI)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: a loaded small VM's figures are not thread contention)",
    )
    args = parser.parse_args(argv)
    run(quick=args.quick, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
