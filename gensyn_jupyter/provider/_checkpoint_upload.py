"""The provider's side of resumable runs: upload each checkpoint at once; fetch a resume point.

While a task runs, each resumable checkpoint the worker announces
(:mod:`._resume`) is uploaded (two blobs) and posted on the lease, newest
first: if a newer one is announced while an upload is under way, the older
one is skipped; a paid run's post carries this provider's signed claim for
the work up to it. Should this provider then be lost, the coordinator queues
the task again and the next provider's lease names that checkpoint, which
:func:`fetch_resume` downloads into the worker's checkpoint directory.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..protocol import (
    CheckpointBlob,
    CheckpointLeaf,
    CheckpointPost,
    CoordinatorError,
    Lease,
    ProgressClaim,
    sha256_hex,
)
from ._client import ProviderClient

__all__ = ["CheckpointUploader", "fetch_resume"]


def _stem(directory: Path, step: int, kind: str) -> Path:
    from ..verify import CheckpointStore

    return directory / CheckpointStore.stem(step, kind)


def fetch_resume(client: ProviderClient, point: CheckpointPost, directory: Path) -> None:
    """Download the checkpoints of ``point`` into ``directory`` as the store names them.

    Raises
    ------
    ValueError
        When a blob does not hash to its name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for blob in point.blobs:
        stem = _stem(directory, blob.step, blob.kind)
        for sha, suffix in ((blob.meta, ".json"), (blob.tensors, ".safetensors")):
            data = client.blobs.get_blob(sha)
            if sha256_hex(data) != sha:
                raise ValueError(f"checkpoint blob {sha} of step {blob.step} is corrupt")
            Path(str(stem) + suffix).write_bytes(data)


class CheckpointUploader:
    """Uploads the latest announced checkpoint of one lease, in a thread of its own.

    Parameters
    ----------
    client, lease
        Where to post.
    directory
        The worker's checkpoint directory for this task.
    log
        The provider's log.
    known
        Checkpoints already on the coordinator (a resumed run's earlier ones).
    claim
        For a paid run: signs the claim for the work up to a checkpoint, given
        its step, its leaf hash and the seconds since this uploader started.
    """

    def __init__(
        self,
        client: ProviderClient,
        lease: Lease,
        directory: Path,
        log: Callable[[str], None],
        known: list[CheckpointBlob],
        claim: Callable[[int, str, float], ProgressClaim | None] | None = None,
    ) -> None:
        self._client = client
        self._claim = claim
        self._started = time.monotonic()
        self._lease = lease
        self._directory = directory
        self._log = log
        self._uploaded: dict[tuple[int, str], tuple[str, str]] = {
            (b.step, b.kind): (b.meta, b.tensors) for b in known
        }
        self._latest: dict[str, Any] | None = None
        self._closed = False
        self._wake = threading.Condition()
        self.posted: list[int] = []
        """Steps of the checkpoints posted so far."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def offer(self, progress: dict[str, Any]) -> None:
        """A checkpoint the worker just saved (its recorder's progress)."""
        with self._wake:
            self._latest = progress
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: skip what is not uploaded yet (the run ended), wait for a post under way."""
        with self._wake:
            self._closed = True
            self._latest = None
            self._wake.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._latest is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                progress, self._latest = self._latest, None
            assert progress is not None
            try:
                self._send(progress)
            except CoordinatorError as exc:
                self._log(f"checkpoint at step {progress.get('step')} refused: {exc.detail}")
                if exc.status in (403, 404, 409):
                    return  # the lease is gone, or the task is not resumable
            except (httpx.HTTPError, OSError, ValueError) as exc:
                # the file was thinned away, or the coordinator is unreachable: the next one
                self._log(f"could not post the checkpoint at step {progress.get('step')}: {exc}")

    def _send(self, progress: dict[str, Any]) -> None:
        step = int(progress["step"])
        stem = _stem(self._directory, step, "boundary")
        meta = _read_regular(Path(str(stem) + ".json"))
        tensors = _read_regular(Path(str(stem) + ".safetensors"))
        meta_sha, tensors_sha = sha256_hex(meta), sha256_hex(tensors)
        self._client.blobs.upload_missing({meta_sha: meta, tensors_sha: tensors})
        self._uploaded[(step, "boundary")] = (meta_sha, tensors_sha)
        leaves = [CheckpointLeaf.model_validate(leaf) for leaf in progress["leaves"]]
        blobs = [
            CheckpointBlob(leaf=i, step=leaf.step, kind=leaf.kind, meta=shas[0], tensors=shas[1])
            for i, leaf in enumerate(leaves)
            if (shas := self._uploaded.get((leaf.step, leaf.kind))) is not None
        ]
        claim = None
        if self._claim is not None:
            claim = self._claim(step, leaves[-1].leaf, time.monotonic() - self._started)
        post = CheckpointPost(
            claim=claim,
            leaf=int(progress["leaf"]),
            step=step,
            leaves=leaves,
            dues=[int(d) for d in progress["dues"]],
            every=int(progress["every"]),
            next_due=int(progress["next_due"]),
            blobs=blobs,
        )
        self._client.post_checkpoint(self._lease.id, post)
        self.posted.append(step)


def _read_regular(path: Path) -> bytes:
    """A file the (sandboxed, still running) cell could have swapped: no link, no FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
