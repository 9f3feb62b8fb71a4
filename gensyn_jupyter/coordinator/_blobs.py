"""Content-addressed blob store on disk: ``<root>/<sha[:2]>/<sha>``.

Uploads stream to a temporary file in the blob's own directory while hashing,
are checked against their name, fsynced and moved into place atomically, so a
reader never sees a partial blob and a crash leaves at most a stray temp file.

Reads are checked too: a blob is hashed before it is first served (and again
whenever its file changes), so a blob corrupted on disk is never served. It is
moved aside to ``<root>/corrupt/`` and answers 404 like a missing blob, so the
next client that needs it uploads it again. The store counts the bytes it
received and served (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from ..protocol import is_sha256
from ._errors import ApiError

__all__ = ["BlobStore"]

_log = logging.getLogger("gensyn_jupyter.coordinator")

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
        self.bytes_in = 0
        """Bytes of uploads stored (new blobs and repeats) since the process started."""
        self.bytes_out = 0
        """Bytes of blobs served since the process started."""
        self.corrupt_found = 0
        """Blobs found corrupted on disk (and moved aside) since the process started."""
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._corrupt: set[str] = set()
        self._lock = threading.Lock()

    def path(self, sha: str) -> Path:
        """Where blob ``sha`` lives (whether or not it is stored)."""
        if not is_sha256(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        return self.root / sha[:2] / sha

    def size(self, sha: str) -> int | None:
        """The size of blob ``sha`` in bytes, ``None`` when it is not stored.

        A blob not yet checked since its file last changed is hashed first; one
        whose bytes do not hash to its name is moved aside and counts as missing.
        """
        path = self.path(sha)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if self._verified.get(sha) == key:
                return stat.st_size
        try:
            actual = _hash_file(path)
        except FileNotFoundError:
            return None
        if actual != sha:
            self._quarantine(sha, actual)
            return None
        with self._lock:
            self._verified[sha] = key
        return stat.st_size

    def exists(self, sha: str) -> bool:
        """True when blob ``sha`` is stored."""
        return self.size(sha) is not None

    def read_bytes(self, sha: str) -> bytes:
        """All bytes of blob ``sha`` (for small blobs such as bundles), checked against its name.

        Raises
        ------
        FileNotFoundError
            When the blob is not stored, or was corrupted on disk (then moved aside).
        """
        data = self.path(sha).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            self._quarantine(sha, actual)
            raise FileNotFoundError(f"blob {sha} was corrupted on disk and has been removed")
        return data

    def was_corrupt(self, sha: str) -> bool:
        """True when blob ``sha`` was found corrupted (and not uploaded again since)."""
        with self._lock:
            return sha in self._corrupt

    def _quarantine(self, sha: str, actual: str) -> None:
        """Move a corrupted blob to ``<root>/corrupt/`` (kept for a post-mortem, never served)."""
        with self._lock:
            self._verified.pop(sha, None)
            self._corrupt.add(sha)
            self.corrupt_found += 1
        aside = self.root / "corrupt"
        aside.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path(sha), aside / f"{sha}.{actual[:12]}")
        _log.error(
            "blob %s is corrupted on disk (its bytes hash to %s); moved to %s, "
            "it answers 404 until uploaded again",
            sha,
            actual,
            aside,
        )

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
            stat = target.stat()
            with self._lock:
                self._verified[sha] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                self._corrupt.discard(sha)
                self.bytes_in += size
            return size, new
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def iter_bytes(self, sha: str) -> AsyncIterator[bytes]:
        """Yield blob ``sha`` in chunks, reading off the event loop.

        The bytes are hashed on the way; when the file changed under the
        reader (corrupted after it was checked) the stream stops with an
        error before its last chunk, so the client sees a broken download,
        never a complete wrong one.
        """
        fh = await anyio.to_thread.run_sync(open, self.path(sha), "rb")
        hasher = hashlib.sha256()
        try:
            chunk = await anyio.to_thread.run_sync(fh.read, _READ_CHUNK)
            while chunk:
                hasher.update(chunk)
                following = await anyio.to_thread.run_sync(fh.read, _READ_CHUNK)
                if not following and hasher.hexdigest() != sha:
                    self._quarantine(sha, hasher.hexdigest())
                    raise OSError(f"blob {sha} changed on disk while it was served")
                with self._lock:
                    self.bytes_out += len(chunk)
                yield chunk
                chunk = following
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


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _commit(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
