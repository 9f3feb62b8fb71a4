"""Content-addressed blob store on disk: ``<root>/<sha[:2]>/<sha>``.

Uploads stream to a temporary file in the blob's own directory while hashing,
are checked against their name, fsynced and moved into place atomically, so a
reader never sees a partial blob and a crash leaves at most a stray temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from ..protocol import is_sha256
from ._errors import ApiError

__all__ = ["BlobStore"]

_WRITE_BATCH = 1 << 20
_QUEUE = 16  # batches of _WRITE_BATCH waiting for the writer thread
_SYNC_EVERY = 32 << 20
_READ_CHUNK = 1 << 20


class BlobStore:
    """Blobs named by the sha256 of their bytes, in ``root``.

    Parameters
    ----------
    root
        Directory of the store (created when missing).
    max_bytes
        Largest blob accepted; larger uploads answer 413.
    """

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        """Where blob ``sha`` lives (whether or not it is stored)."""
        if not is_sha256(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        return self.root / sha[:2] / sha

    def size(self, sha: str) -> int | None:
        """The size of blob ``sha`` in bytes, ``None`` when it is not stored."""
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            return None

    def exists(self, sha: str) -> bool:
        """True when blob ``sha`` is stored."""
        return self.size(sha) is not None

    def read_bytes(self, sha: str) -> bytes:
        """All bytes of blob ``sha`` (for small blobs such as bundles)."""
        return self.path(sha).read_bytes()

    async def put(
        self, sha: str, chunks: AsyncIterator[bytes], *, declared: int | None = None
    ) -> tuple[int, bool]:
        """Store the bytes ``chunks`` yields as blob ``sha``.

        Parameters
        ----------
        sha
            The name the bytes must hash to.
        chunks
            The request body, chunk by chunk.
        declared
            ``Content-Length`` when the client sent one (checked before reading).

        Returns
        -------
        tuple of (int, bool)
            The size, and True when the blob was new (False: already stored).

        Raises
        ------
        ApiError
            413 past ``max_bytes``; 400 when the bytes hash to another name.
        """
        if declared is not None and declared > self.max_bytes:
            raise self._too_big()
        target = self.path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:8]}-", suffix=".tmp")
        tmp = Path(tmp_name)
        writer = _Writer(os.fdopen(fd, "wb"))
        done = asyncio.get_running_loop().run_in_executor(None, writer.run)
        size = 0
        try:
            try:
                batch = bytearray()
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_big()
                    batch += chunk
                    if len(batch) >= _WRITE_BATCH:
                        await writer.put(bytes(batch))
                        batch.clear()
                await writer.put(bytes(batch))
            finally:
                await writer.put(None)  # the writer flushes, fsyncs and closes the file
                await done
            actual = writer.hasher.hexdigest()
            if actual != sha:
                raise ApiError(
                    400,
                    f"the uploaded bytes hash to {actual}, not to the name {sha}; "
                    "a blob's name is the sha256 of its bytes",
                    "sha256",
                )
            new = not target.exists()
            await anyio.to_thread.run_sync(_commit, tmp, target)
            return size, new
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def iter_bytes(self, sha: str) -> AsyncIterator[bytes]:
        """Yield blob ``sha`` in chunks, reading off the event loop."""
        fh = await anyio.to_thread.run_sync(open, self.path(sha), "rb")
        try:
            while chunk := await anyio.to_thread.run_sync(fh.read, _READ_CHUNK):
                yield chunk
        finally:
            fh.close()

    def _too_big(self) -> ApiError:
        return ApiError(413, f"blob is over the size limit of {self.max_bytes} bytes")


class _Writer:
    """Hashes and writes an upload on a thread of its own while the next chunks arrive.

    The event loop hands over batches through a small queue (so at most
    ``_QUEUE`` MiB wait in memory); every ``_SYNC_EVERY`` bytes the writer
    starts the write-back (``fdatasync``), so the final ``fsync`` does not wait
    for the whole blob. A failed write (disk full) ends the upload with 507.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.hasher = hashlib.sha256()
        self.error: OSError | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE)

    async def put(self, data: bytes | None) -> None:
        """Queue ``data`` (``None``: the end), waiting off the loop when the queue is full."""
        if self.error is not None and data is not None:
            raise ApiError(507, f"the coordinator cannot store the blob: {self.error}")
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            await anyio.to_thread.run_sync(self._queue.put, data)

    def run(self) -> None:
        """The writer thread: until ``None``, hash and write; then flush, fsync, close."""
        unsynced = 0
        with self.fh:
            while (data := self._queue.get()) is not None:
                if self.error is not None:
                    continue  # drain the queue so the loop never blocks on it
                try:
                    self.hasher.update(data)
                    self.fh.write(data)
                    unsynced += len(data)
                    if unsynced >= _SYNC_EVERY:
                        self.fh.flush()
                        os.fdatasync(self.fh.fileno())
                        unsynced = 0
                except OSError as exc:
                    self.error = exc
            if self.error is None:
                try:
                    self.fh.flush()
                    os.fsync(self.fh.fileno())
                except OSError as exc:
                    self.error = exc
        if self.error is not None:
            raise ApiError(507, f"the coordinator cannot store the blob: {self.error}")


def _commit(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
