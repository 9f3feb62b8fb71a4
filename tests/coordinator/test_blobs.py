"""Blobs: the store on disk, and HEAD/PUT/GET over the API."""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gensyn_jupyter.coordinator._blobs import BlobStore
from gensyn_jupyter.coordinator._errors import ApiError

from .coordinator_helpers import Coord, sha

pytestmark = pytest.mark.anyio


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _stray_files(root: pathlib.Path) -> list[str]:
    return [f for _, _, files in os.walk(root) for f in files if f.endswith(".tmp")]


async def test_store_put_is_content_addressed_and_idempotent(tmp_path: pathlib.Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=1 << 20)
    data = os.urandom(5000)
    name = sha(data)
    assert not store.exists(name)
    assert await store.put(name, _chunks(data), declared=len(data)) == (5000, True)
    assert await store.put(name, _chunks(data)) == (5000, False)
    assert store.size(name) == 5000 and store.read_bytes(name) == data
    assert store.path(name) == tmp_path / "blobs" / name[:2] / name
    assert b"".join([c async for c in store.iter_bytes(name)]) == data
    assert _stray_files(tmp_path) == []


async def test_store_refuses_mismatch_and_oversize_leaving_nothing(tmp_path: pathlib.Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100)
    wrong = "0" * 64
    with pytest.raises(ApiError) as info:
        await store.put(wrong, _chunks(b"hello"))
    assert info.value.status == 400 and "hash to" in info.value.detail
    big = b"x" * 101
    with pytest.raises(ApiError) as info:
        await store.put(sha(big), _chunks(big, 10))  # no Content-Length: counted while reading
    assert info.value.status == 413
    with pytest.raises(ApiError) as info:
        await store.put(sha(big), _chunks(big), declared=101)
    assert info.value.status == 413
    assert not store.exists(wrong) and not store.exists(sha(big))
    assert _stray_files(tmp_path) == []


async def test_store_full_disk_is_507_and_leaves_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails (disk full) ends the upload with 507; no blob, no temp file."""
    import gensyn_jupyter.coordinator._blobs as blobs_module

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh: Any) -> None:
            self._fh = fh
            self.written = 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 3 << 20:
                raise OSError(28, "No space left on device")
            return int(self._fh.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._fh, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()

    monkeypatch.setattr(blobs_module.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    store = BlobStore(tmp_path / "blobs", max_bytes=64 << 20)
    data = os.urandom(8 << 20)
    with pytest.raises(ApiError) as caught:
        await store.put(sha(data), _chunks(data, 1 << 16), declared=len(data))
    assert caught.value.status == 507
    assert "No space left on device" in str(caught.value.detail)
    assert not store.exists(sha(data))
    assert _stray_files(tmp_path) == []


def test_store_refuses_a_path_that_is_not_a_sha(tmp_path: pathlib.Path) -> None:
    store = BlobStore(tmp_path, max_bytes=10)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


async def test_head_put_get_round_trip(coord: Coord) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks each way
    name = hashlib.sha256(data).hexdigest()
    http = coord.http
    assert (await http.head(f"/v1/blobs/{name}")).status_code == 404
    put = await http.put(f"/v1/blobs/{name}", content=data)
    assert put.status_code == 201 and put.json() == {"sha256": name, "size": len(data)}
    head = await http.head(f"/v1/blobs/{name}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    got = await http.get(f"/v1/blobs/{name}")
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    again = await http.put(f"/v1/blobs/{name}", content=data)
    assert again.status_code == 200


async def test_put_with_wrong_bytes_is_400_and_stores_nothing(coord: Coord) -> None:
    name = sha(b"the real bytes")
    r = await coord.http.put(f"/v1/blobs/{name}", content=b"other bytes")
    assert r.status_code == 400
    assert r.json()["field"] == "sha256" and name in r.json()["detail"]
    assert (await coord.http.head(f"/v1/blobs/{name}")).status_code == 404


async def test_get_unknown_blob_is_404_error_body(coord: Coord) -> None:
    name = sha(b"never uploaded")
    r = await coord.http.get(f"/v1/blobs/{name}")
    assert r.status_code == 404 and name in r.json()["detail"]


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "g" * 64, "0" * 63])
async def test_malformed_sha_is_422_naming_it(coord: Coord, bad: str) -> None:
    for method in ("GET", "PUT"):
        r = await coord.http.request(method, f"/v1/blobs/{bad}", content=b"x")
        assert r.status_code == 422
        assert r.json()["field"] == "sha256"
    assert (await coord.http.head(f"/v1/blobs/{bad}")).status_code == 422


async def test_oversize_blob_is_413(
    make_app: Callable[..., Any], client_for: Callable[[Any], AsyncIterator[Coord]]
) -> None:
    async for c in client_for(make_app(max_blob_bytes=1000)):
        big = b"y" * 1001
        r = await c.http.put(f"/v1/blobs/{sha(big)}", content=big)
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]

        async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length
            for _ in range(11):
                yield b"z" * 100

        r = await c.http.put(f"/v1/blobs/{sha(b'z' * 1100)}", content=stream())
        assert r.status_code == 413
        ok = b"y" * 1000
        assert (await c.http.put(f"/v1/blobs/{sha(ok)}", content=ok)).status_code == 201
