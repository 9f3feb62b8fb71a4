"""Multi-device tasks (``--gpus N``): the worker forks the cell's other ranks.

The worker that took the job becomes rank 0 and forks ranks 1..N-1 after
the cell's inputs are loaded (they are already warm: torch imported, inputs
in memory). Every rank gets torchrun's environment (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) and its own device (``cuda:RANK``, or the CPU), and the
default process group is started for the cell (NCCL on CUDA, gloo on the
CPU) unless the cell calls ``init_process_group`` itself.

A cell that does not set up data parallelism itself (no
``DistributedDataParallel`` nor ``DistributedSampler`` in it) gets it:

- every optimizer's ``step()`` first averages the gradients of its
  parameters over the ranks (one all-reduce per dtype and device), so the
  ranks stay in sync like DDP's;
- every ``DataLoader`` among the cell's inputs is sharded over the ranks
  with a ``DistributedSampler`` (same batch size per rank, a new shuffle
  each epoch, the same on every rank); the original loader is put back after.

Rank 0 runs the recording (checkpoint commitments) and returns the results;
the other ranks write their outcome (error, digest of their modules) to
``rank<R>.json`` in the work dir and exit. Rank 0 checks that every rank
ended with the same weights, and stops at once when a rank fails.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Ranks", "fork_ranks"]

_CHILD_GRACE_SECONDS = 120.0
"""How long rank 0 waits for the other ranks after its own run ended."""

_DIY_MARKERS = ("DistributedDataParallel", "DistributedSampler", "FullyShardedDataParallel")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with(parent_pid: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


@dataclass
class Ranks:
    """This process's place among the task's ranks."""

    rank: int
    world: int
    device: str
    workdir: Path
    children: dict[int, int] = field(default_factory=dict)
    """Rank 0 only: rank → pid."""
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _ending: threading.Lock = field(default_factory=threading.Lock)
    _joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Metric points with this rank as their label."""
        return [{**point, "rank": self.rank} for point in points]

    # -- before the cell -------------------------------------------------

    def setup(self, namespace: MutableMapping[str, Any], source: str, *, seed: int) -> list[str]:
        """Start the process group and, unless the cell does it, data parallelism.

        Returns lines for the user (rank 0 says them).
        """
        import datetime

        import torch
        import torch.distributed as dist

        lines: list[str] = []
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(self.device))
        backend = "nccl" if cuda else "gloo"
        if "init_process_group" not in source:
            dist.init_process_group(
                backend=backend,
                init_method="env://",
                rank=self.rank,
                world_size=self.world,
                timeout=datetime.timedelta(minutes=10),
            )
            self._undo.append(dist.destroy_process_group)
            lines.append(f"{self.world} ranks, torch.distributed {backend} process group started")
        else:
            lines.append(f"{self.world} ranks; the cell starts its own process group")
        if any(marker in source for marker in _DIY_MARKERS):
            lines.append("the cell sets up data parallelism itself: gradients are not averaged")
            return lines
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        hook = register_optimizer_step_pre_hook(self._average_gradients)
        self._undo.append(hook.remove)
        sharded = self._shard_loaders(namespace, seed=seed)
        lines.append(
            "data parallel: each optimizer step averages gradients over the ranks"
            + (f"; {', '.join(sharded)} sharded per rank" if sharded else "")
        )
        return lines

    def _average_gradients(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        groups: dict[tuple[Any, Any], list[torch.Tensor]] = {}
        for group in optimizer.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is not None and not grad.is_sparse:
                    groups.setdefault((grad.dtype, grad.device), []).append(grad)
        for _key, grads in sorted(groups.items(), key=lambda kv: str(kv[0])):
            flat = torch.cat([grad.reshape(-1) for grad in grads])
            dist.all_reduce(flat)
            flat.div_(self.world)
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def _shard_loaders(self, namespace: MutableMapping[str, Any], *, seed: int) -> list[str]:
        from torch.utils.data import DataLoader, RandomSampler

        sharded: list[str] = []
        for name, loader in list(namespace.items()):
            if not isinstance(loader, DataLoader) or loader.batch_size is None:
                continue
            sampler = _EpochSampler(
                loader.dataset,
                num_replicas=self.world,
                rank=self.rank,
                shuffle=isinstance(loader.sampler, RandomSampler),
                seed=seed % (2**31),
                drop_last=loader.drop_last,
            )
            namespace[name] = DataLoader(
                loader.dataset,
                batch_size=loader.batch_size,
                sampler=sampler,
                num_workers=loader.num_workers,
                collate_fn=loader.collate_fn,
                pin_memory=loader.pin_memory,
                drop_last=loader.drop_last,
            )
            self._undo.append(functools.partial(namespace.__setitem__, name, loader))
            sharded.append(f"`{name}`")
        return sharded

    # -- after the cell --------------------------------------------------

    def teardown(self) -> None:
        """Put the cell's loaders back and stop the process group."""
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def exit_child(self, namespace: MutableMapping[str, Any], error: dict[str, Any] | None) -> None:
        """Ranks 1..N-1: write the outcome for rank 0, then leave at once."""
        outcome: dict[str, Any] = {"rank": self.rank, "error": error, "digest": None}
        with contextlib.suppress(Exception):
            if error is None:
                outcome["digest"] = modules_digest(namespace)
        tmp = self.workdir / f"rank{self.rank}.json.tmp"
        tmp.write_text(json.dumps(outcome))
        os.replace(tmp, self.workdir / f"rank{self.rank}.json")
        self.teardown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if error is None else 1)

    def watch(self, on_failure: Callable[[str], None]) -> None:
        """Rank 0: call ``on_failure`` (from a thread) when another rank fails mid-run."""

        def wait(rank: int, pid: int) -> None:
            _, status = os.waitpid(pid, 0)
            error = self._outcome(rank).get("error")
            if os.waitstatus_to_exitcode(status) == 0 and error is None:
                return
            with self._ending:  # rank 0 is still in the cell: it may wait forever on this rank
                if self._joined or self._stopping.is_set():
                    return
                self._stopping.set()
                on_failure(self._describe(rank, status, error))

        for rank, pid in self.children.items():
            threading.Thread(target=wait, args=(rank, pid), daemon=True).start()

    def join(self, namespace: MutableMapping[str, Any], *, failed: bool) -> str | None:
        """Rank 0, after its run: wait for the other ranks; why the run failed, or None.

        When rank 0's own cell failed, a failure of another rank is the cause
        more often than not (a collective breaks when a peer dies): that
        rank's error, when it reports one within a few seconds, is returned.
        """
        import time

        with self._ending:
            self._joined = True
        if failed:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                for rank in self.children:
                    error = self._outcome(rank).get("error")
                    if error is not None:
                        self.stop()
                        return self._describe(rank, None, error)
                time.sleep(0.05)
            self.stop()
            return None
        mine = modules_digest(namespace)
        deadline = time.monotonic() + _CHILD_GRACE_SECONDS
        for rank in self.children:
            path = self.workdir / f"rank{rank}.json"
            while not path.exists() and time.monotonic() < deadline:
                if self._stopping.is_set():
                    return None  # the watcher already reported it
                time.sleep(0.02)
            if not path.exists():
                self.stop()
                return (
                    f"rank {rank} had not finished {_CHILD_GRACE_SECONDS:g} s after rank 0: "
                    "every rank must run the same optimizer steps (check for rank-dependent "
                    "loops or a rank that skips a step)"
                )
            outcome = self._outcome(rank)
            if outcome.get("error") is not None:
                self.stop()
                return self._describe(rank, None, outcome["error"])
            if outcome.get("digest") != mine:
                self.stop()
                return (
                    f"rank {rank} ended with other weights than rank 0: the ranks went out of "
                    "sync (an optimizer or a model the worker does not see, or a rank-dependent "
                    "step); wrap the model in DistributedDataParallel in the cell"
                )
        self._stopping.set()
        return None

    def stop(self) -> None:
        """Rank 0: kill the other ranks (they die with rank 0 anyway)."""
        import signal

        self._stopping.set()
        for pid in self.children.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _outcome(self, rank: int) -> dict[str, Any]:
        try:
            loaded = json.loads((self.workdir / f"rank{rank}.json").read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def _describe(rank: int, status: int | None, error: Any) -> str:
        if isinstance(error, dict):
            return f"rank {rank} failed: {error.get('type', 'Error')}: {error.get('message', '')}"
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        how = f"was killed by signal {-code}" if code is not None and code < 0 else "exited"
        return f"rank {rank} {how} (exit status {code}) before the end of the cell"


class _EpochSampler:
    """A ``DistributedSampler`` that moves to the next epoch by itself."""

    def __init__(self, dataset: Any, **kwargs: Any) -> None:
        from torch.utils.data import DistributedSampler

        self._inner: Any = DistributedSampler(dataset, **kwargs)
        self._epoch = 0

    def __iter__(self) -> Iterator[int]:
        self._inner.set_epoch(self._epoch)
        self._epoch += 1
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)


def modules_digest(namespace: MutableMapping[str, Any]) -> str:
    """sha256 of every ``nn.Module``'s state in ``namespace``, by name."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(namespace):
        value = namespace[name]
        if not isinstance(value, torch.nn.Module) or name.startswith("_"):
            continue
        digest.update(name.encode())
        for key, tensor in value.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fork_ranks(world: int, device: str, *, workdir: Path, threads: int | None) -> Ranks:
    """Fork ranks 1..world-1 of this worker; returns the calling process's rank.

    Call before CUDA is touched (a forked child cannot use a CUDA context
    its parent started) and before any thread is started.
    """
    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    per_rank = max(1, (threads or torch.get_num_threads()) // world)
    parent = os.getpid()
    ranks = Ranks(rank=0, world=world, device=_device(device, 0), workdir=workdir)
    for rank in range(1, world):
        pid = os.fork()
        if pid == 0:
            _die_with(parent)
            ranks = Ranks(rank=rank, world=world, device=_device(device, rank), workdir=workdir)
            # the user sees rank 0's prints; the others' go to a file in the work dir
            out = os.open(workdir / f"rank{rank}.stdout", os.O_WRONLY | os.O_CREAT, 0o600)
            os.dup2(out, 1)
            os.close(out)
            break
        ranks.children[rank] = pid
    os.environ.update(RANK=str(ranks.rank), LOCAL_RANK=str(ranks.rank))
    torch.set_num_threads(per_rank)
    return ranks


def _device(device: str, rank: int) -> str:
    return f"cuda:{rank}" if device.startswith("cuda") else "cpu"
