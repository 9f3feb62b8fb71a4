"""What an operator relies on: /metrics, blobs checked on read, retried event posts stored once."""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator

import pytest

from gensyn_jupyter.coordinator._blobs import BlobStore
from gensyn_jupyter.coordinator._logs import ids_in_path

from ..e2e._faults import metric_value
from .coordinator_helpers import Coord, sha

pytestmark = pytest.mark.anyio

_LOSS = {"kind": "metrics", "data": {"points": [{"step": 1, "name": "loss", "value": 0.5}]}}


async def _metrics(coord: Coord) -> str:
    r = await coord.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


async def test_metrics_follow_a_task_from_queue_to_lease(coord: Coord) -> None:
    empty = await _metrics(coord)
    assert metric_value(empty, 'gensyn_tasks{state="queued"}') == 0
    assert metric_value(empty, "gensyn_lease_latency_seconds_count") == 0
    assert metric_value(empty, "gensyn_draining") == 0

    task = await coord.submit()
    provider = await coord.register("meter")
    queued = await _metrics(coord)
    assert metric_value(queued, "gensyn_queue_depth") == 1
    assert metric_value(queued, 'gensyn_tasks{state="queued"}') == 1
    assert metric_value(queued, 'gensyn_providers{state="idle"}') == 1

    lease = (await provider.lease()).json()
    assert lease["task"]["id"] == task["id"]
    running = await _metrics(coord)
    assert metric_value(running, "gensyn_queue_depth") == 0
    assert metric_value(running, 'gensyn_tasks{state="running"}') == 1
    assert metric_value(running, 'gensyn_providers{state="busy"}') == 1
    assert metric_value(running, "gensyn_lease_latency_seconds_count") == 1
    assert metric_value(running, 'gensyn_lease_latency_seconds_bucket{le="+Inf"}') == 1
    assert metric_value(running, "gensyn_lease_latency_seconds_sum") >= 0
    # the bundle went in; nothing was downloaded yet
    assert metric_value(running, "gensyn_blob_bytes_received_total") > 0
    assert metric_value(running, "gensyn_blob_bytes_sent_total") == 0
    got = await coord.http.get(f"/v1/blobs/{task['spec']['bundle']}")
    sent = metric_value(await _metrics(coord), "gensyn_blob_bytes_sent_total")
    assert sent == len(got.content)

    assert (await provider.post_result(lease["id"])).status_code == 200
    done = await _metrics(coord)
    assert metric_value(done, 'gensyn_tasks{state="settled"}') == 1
    assert metric_value(done, 'gensyn_tasks{state="running"}') == 0


async def test_a_retried_events_post_is_stored_once(coord: Coord) -> None:
    task = await coord.submit()
    provider = await coord.register()
    lease = (await provider.lease()).json()
    body = {"events": [_LOSS], "seq": 1}
    url = f"/v1/leases/{lease['id']}/events"
    first = await coord.http.post(url, json=body, headers=provider.auth)
    again = await coord.http.post(url, json=body, headers=provider.auth)
    assert first.json() == {"accepted": 1, "cancelled": False}
    assert again.json() == {"accepted": 0, "cancelled": False}
    later = await coord.http.post(url, json={**body, "seq": 2}, headers=provider.auth)
    assert later.json()["accepted"] == 1
    metrics = [e for e in await coord.events(task["id"]) if e["kind"] == "metrics"]
    assert len(metrics) == 2


async def test_a_blob_corrupted_on_disk_is_refused_then_healed_by_a_new_upload(
    coord: Coord, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(300_000)
    name = await coord.upload(data)
    path = tmp_path / "blobs" / name[:2] / name
    broken = bytearray(path.read_bytes())
    broken[1000] ^= 0xFF
    path.write_bytes(bytes(broken))

    got = await coord.http.get(f"/v1/blobs/{name}")
    assert got.status_code == 404
    assert "corrupted" in got.json()["detail"] and "upload it again" in got.json()["detail"]
    assert (await coord.http.head(f"/v1/blobs/{name}")).status_code == 404
    assert list((tmp_path / "blobs" / "corrupt").iterdir())  # kept aside, never served
    assert metric_value(await _metrics(coord), "gensyn_blobs_corrupt_total") == 1

    assert (await coord.http.put(f"/v1/blobs/{name}", content=data)).status_code == 201
    healed = await coord.http.get(f"/v1/blobs/{name}")
    assert healed.status_code == 200 and healed.content == data


async def test_a_blob_changed_while_it_is_served_breaks_the_download(
    tmp_path: pathlib.Path,
) -> None:
    store = BlobStore(tmp_path, max_bytes=64 << 20)
    data = os.urandom(3 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    assert await store.put(sha(data), chunks(), declared=len(data)) == (len(data), True)
    assert store.size(sha(data)) == len(data)
    stream = store.iter_bytes(sha(data))
    first = await stream.__anext__()
    path = store.path(sha(data))
    with open(path, "r+b") as fh:  # corrupt the last MiB behind the reader's back
        fh.seek(len(data) - 10)
        fh.write(b"\0" * 10)
    received = [first]
    with pytest.raises(OSError, match="changed on disk"):
        async for chunk in stream:
            received.append(chunk)
    assert sum(map(len, received)) < len(data)  # the client never gets a complete wrong blob
    assert store.size(sha(data)) is None and store.was_corrupt(sha(data))
    with pytest.raises(FileNotFoundError):
        store.read_bytes(sha(data))


def test_request_log_names_the_ids_in_a_path() -> None:
    assert ids_in_path("/v1/tasks/t_abc/events") == {"task_id": "t_abc"}
    assert ids_in_path("/v1/leases/l_1/result") == {"lease_id": "l_1"}
    assert ids_in_path("/v1/providers/p_9/lease") == {"provider_id": "p_9"}
    assert ids_in_path("/v1/health") == {}
