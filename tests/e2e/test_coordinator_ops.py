"""A real coordinator process: SIGTERM drains it, ``--log-json`` names task ids, and a
full disk (a file-size limit on the process) answers 507 and fails a task cleanly."""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ._faults import (
    Proc,
    free_port,
    start_coordinator,
    start_provider,
    wait_for_provider,
    wait_healthy,
)
from ._kernel import started_kernel

_PROVIDER = {
    "name": "drainee",
    "device_type": "cpu",
    "cpu_count": 1,
    "python": "3.11",
    "torch": "2",
}
_BUNDLE = json.dumps(
    {
        "source": "loss = 1.0\n",
        "inputs": [],
        "outputs": ["loss"],
        "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
    }
).encode()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_sigterm_drains_the_coordinator_and_json_logs_name_the_task(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "coordinator" / "data"
    data.parent.mkdir()
    coordinator = start_coordinator(data, port, extra=("--log-json", "--drain-seconds", "10"))
    try:
        http = httpx.Client(base_url=url, timeout=30)
        assert http.put(f"/v1/blobs/{_sha(_BUNDLE)}", content=_BUNDLE).status_code == 201
        task = http.post("/v1/tasks", json={"bundle": _sha(_BUNDLE)}).json()
        assert http.get(f"/v1/tasks/{task['id']}").status_code == 200
        assert http.post(f"/v1/tasks/{task['id']}/cancel").json()["state"] == "cancelled"
        reg = http.post("/v1/providers", json=_PROVIDER).json()
        auth = {"Authorization": f"Bearer {reg['token']}"}
        poll_url = f"/v1/providers/{reg['provider']['id']}/lease"

        answers: dict[str, httpx.Response] = {}
        upload_started = threading.Event()
        blob = os.urandom(6 << 20)

        def slow_body() -> Iterator[bytes]:
            for i in range(0, len(blob), 1 << 20):
                upload_started.set()
                yield blob[i : i + (1 << 20)]
                time.sleep(0.3)

        def poll() -> None:
            answers["poll"] = httpx.post(f"{url}{poll_url}?wait=30", headers=auth, timeout=60)

        def upload() -> None:
            answers["upload"] = httpx.put(
                f"{url}/v1/blobs/{_sha(blob)}", content=slow_body(), timeout=60
            )

        threads = [threading.Thread(target=poll), threading.Thread(target=upload)]
        for t in threads:
            t.start()
        assert upload_started.wait(10)
        time.sleep(0.5)  # the long poll is waiting, the upload is half-way
        coordinator.signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        # uvicorn re-raises the signal once it has shut down (as systemd expects)
        assert coordinator.wait(30) in (0, -signal.SIGTERM)
        # the upload in flight finished; the waiting poll ended without a lease
        assert answers["upload"].status_code == 201, answers["upload"].text
        assert answers["poll"].status_code == 204

        records = [
            json.loads(line) for line in coordinator.output.splitlines() if line.startswith("{")
        ]
        about_task = [r for r in records if r.get("task_id") == task["id"]]
        assert {r["path"] for r in about_task} >= {
            f"/v1/tasks/{task['id']}",
            f"/v1/tasks/{task['id']}/cancel",
        }
        assert all(r["level"] == "info" and r["status"] == 200 for r in about_task)
        polls = [r for r in records if r.get("path") == poll_url]
        assert [r["status"] for r in polls] == [204]
        assert polls[0]["provider_id"] == reg["provider"]["id"]

        # restarted on the same data: the blob uploaded during the drain is whole
        coordinator = start_coordinator(data, port)
        assert httpx.get(f"{url}/v1/blobs/{_sha(blob)}").content == blob
        metrics = httpx.get(f"{url}/metrics").text
        assert 'gensyn_tasks{state="cancelled"} 1' in metrics
    finally:
        coordinator.stop()


def _limit_file_size() -> None:
    """In the coordinator process: no file over 2 MiB (writes past it fail with EFBIG)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


def _temp_files(root: Path) -> list[str]:
    return [f for _, _, files in os.walk(root) for f in files if f.endswith(".tmp")]


def test_a_full_disk_answers_507_and_fails_the_task_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "coordinator" / "data"
    data.mkdir(parents=True)
    args = ["coordinator", "--port", str(port), "--data-dir", str(data)]
    coordinator = Proc(args, tmp_path / "coord.log", preexec=_limit_file_size)
    provider = start_provider(url, tmp_path / "provider", "fullbox")
    env = {"GENSYN_HOME": str(tmp_path / "home"), "GENSYN_NETWORK": url}
    try:
        wait_healthy(url, coordinator)
        big = os.urandom(4 << 20)
        put = httpx.put(f"{url}/v1/blobs/{_sha(big)}", content=big, timeout=60)
        assert put.status_code == 507, put.text
        assert "cannot store the blob" in put.json()["detail"]
        assert "File too large" in put.json()["detail"]
        assert httpx.head(f"{url}/v1/blobs/{_sha(big)}").status_code == 404
        assert _temp_files(data) == []
        small = os.urandom(100_000)
        assert httpx.put(f"{url}/v1/blobs/{_sha(small)}", content=small).status_code == 201

        with started_kernel(env) as kernel:
            setup = kernel.run("%load_ext gensyn_jupyter\nimport torch\nX = torch.randn(1 << 20)")
            assert setup.status == "ok", setup.text
            # an input the coordinator cannot store: the cell fails before any task exists
            refused = kernel.run("%%gensyn_train --verify none\ny = X.sum()\n")
            assert refused.status == "error"
            assert "cannot store the blob" in refused.text, refused.text
            assert httpx.get(f"{url}/v1/tasks").json() == []
            # a result the coordinator cannot store: the task fails and says why
            wait_for_provider(url, "fullbox")
            failed = kernel.run("%%gensyn_train --verify none\nout = torch.ones(1 << 20)\n")
            assert failed.status == "error"
            assert "could not upload the result" in failed.text, failed.text
            assert "cannot store the blob" in failed.text
            (task,) = httpx.get(f"{url}/v1/tasks").json()
            assert task["state"] == "failed"
        assert _temp_files(data) == []
        assert httpx.get(f"{url}/v1/health").status_code == 200
    finally:
        provider.stop()
        coordinator.stop()
