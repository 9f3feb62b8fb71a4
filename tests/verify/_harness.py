"""Run a cell through the provider's worker with commitments on, then replay its segments."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gensyn_jupyter.capture import build_bundle
from gensyn_jupyter.protocol import Bundle, Commitment, ResultManifest, sha256_hex
from gensyn_jupyter.verify import CheckpointStore, ReplayResult, replay_segment


@dataclass
class Ran:
    """A finished worker run: its bundle, manifest, commitment and checkpoint store."""

    bundle: Bundle
    manifest: ResultManifest
    store: CheckpointStore
    blob_dir: Path

    @property
    def commitment(self) -> Commitment:
        assert self.manifest.error is None, self.manifest.error
        assert self.manifest.commitment is not None
        return self.manifest.commitment

    def read_blob(self, sha: str) -> bytes:
        return (self.blob_dir / sha).read_bytes()

    def replay(self, start: int, end: int | None = None, **kwargs: Any) -> ReplayResult:
        return replay_segment(
            self.bundle,
            self.read_blob,
            commitment=self.commitment,
            store=self.store,
            start=start,
            end=end,
            **kwargs,
        )

    def boundary_leaves(self) -> list[int]:
        return [i for i, leaf in enumerate(self.commitment.leaves) if leaf.kind == "boundary"]


def run_worker(
    tmp_path: Path,
    source: str,
    namespace: dict[str, Any],
    *,
    every: int | None = None,
    in_process: bool = True,
) -> Ran:
    """Capture ``source`` as the kernel would and run it in the provider's worker (CPU)."""
    prepared = build_bundle(source, namespace)
    prepared.bundle.checkpoint_every = every
    bundle_json = prepared.bundle_json()
    sha = sha256_hex(bundle_json)
    blob_dir = tmp_path / "blobs"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for name, data in {**prepared.blobs, sha: bundle_json}.items():
        (blob_dir / name).write_bytes(data)
    workdir = tmp_path / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    job = {
        "workdir": str(workdir),
        "blob_dir": str(blob_dir),
        "bundle": sha,
        "device": "cpu",
        "threads": None,
        "task_id": "t-0000000000",
        "checkpoint_dir": str(tmp_path / "checkpoints"),
    }
    if in_process:
        from gensyn_jupyter.provider._worker import _Control, _run

        cwd = Path.cwd()
        os.chdir(workdir)
        try:
            _run(job, _Control(io.StringIO()))
        finally:
            os.chdir(cwd)
    else:
        _run_subprocess(job, tmp_path)
    manifest = ResultManifest.model_validate_json((workdir / "out" / "result.json").read_text())
    return Ran(prepared.bundle, manifest, CheckpointStore(tmp_path / "checkpoints"), blob_dir)


def _run_subprocess(job: dict[str, Any], tmp_path: Path) -> None:
    from gensyn_jupyter.provider._pool import Worker, worker_environment

    env = worker_environment(home=tmp_path / "home", threads=torch.get_num_threads())
    worker = Worker(env=env, cwd=tmp_path)
    try:
        assert worker.wait_ready(120), "the worker did not start"
        worker.start_job(job)
        code = worker.proc.wait(timeout=120)
        assert worker.proc.stderr is not None
        assert code == 0, worker.proc.stderr.read().decode()
    finally:
        worker.kill()


@contextmanager
def forward_calls(top: type = torch.nn.Sequential) -> Iterator[Callable[[], int]]:
    """Count forward calls of modules of type ``top`` (the cells' models) while open."""
    calls = [0]

    def hook(module: torch.nn.Module, args: Any) -> None:
        if type(module) is top:
            calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield lambda: calls[0]
    finally:
        handle.remove()


def data(n: int = 64, seed: int = 0) -> MutableMapping[str, Any]:
    """A namespace as a kernel holds it: torch and a small regression set."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "torch": torch,
        "X": torch.randn(n, 4, generator=gen),
        "Y": torch.randn(n, 1, generator=gen),
    }


__all__ = ["Ran", "data", "forward_calls", "run_worker"]
