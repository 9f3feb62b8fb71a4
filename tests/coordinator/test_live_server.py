"""The coordinator started by ``serve`` in its own process, spoken to over real HTTP."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx_sse
import pytest

from .coordinator_helpers import bundle_bytes, sha

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_PROVIDER = {"name": "live", "device_type": "cpu", "cpu_count": 4, "python": "3.11", "torch": "2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("live")
    port = _free_port()
    code = (
        "import pathlib, sys\n"
        "from gensyn_jupyter.coordinator import serve\n"
        f"serve(host='127.0.0.1', port={port}, data_dir=pathlib.Path(sys.argv[1]))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"coordinator did not start:\n{out}")
            time.sleep(0.1)
        assert (data_dir / "coordinator.sqlite").exists() and (data_dir / "blobs").is_dir()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _submit(c: httpx.Client) -> str:
    data = bundle_bytes()
    assert c.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
    r = c.post("/v1/tasks", json={"bundle": sha(data)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _register(c: httpx.Client, name: str = "live") -> tuple[str, dict[str, str]]:
    body = c.post("/v1/providers", json={**_PROVIDER, "name": name}).json()
    return body["provider"]["id"], {"Authorization": f"Bearer {body['token']}"}


def _stdout(text: str) -> dict[str, Any]:
    return {"events": [{"kind": "stdout", "data": {"text": text}}]}


def test_sse_streams_live_and_resumes_with_last_event_id(server: str) -> None:
    with (
        httpx.Client(base_url=server, timeout=10) as c,
        httpx.Client(base_url=server, timeout=10) as streamer,
    ):
        task_id = _submit(c)
        pid, auth = _register(c)
        lease = c.post(f"/v1/providers/{pid}/lease", params={"wait": 5}, headers=auth).json()
        url = f"/v1/tasks/{task_id}/events"

        first: list[httpx_sse.ServerSentEvent] = []
        with httpx_sse.connect_sse(streamer, "GET", url) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            stream = source.iter_sse()
            first += [next(stream), next(stream)]  # queued, running: already stored
            assert [json.loads(e.data)["data"]["state"] for e in first] == ["queued", "running"]
            posted_at = time.monotonic()
            r = c.post(f"/v1/leases/{lease['id']}/events", json=_stdout("live\n"), headers=auth)
            assert r.json()["accepted"] == 1
            live = next(stream)
            assert time.monotonic() - posted_at < 0.9  # woken by the append, not by polling
            assert live.event == "stdout" and json.loads(live.data)["data"] == {"text": "live\n"}
            first.append(live)
        last_seen = int(first[-1].id)

        for text in ("while away 1\n", "while away 2\n"):
            c.post(f"/v1/leases/{lease['id']}/events", json=_stdout(text), headers=auth)
        assert c.post(f"/v1/leases/{lease['id']}/result", json={}, headers=auth).status_code == 200

        with httpx_sse.connect_sse(
            streamer, "GET", url, headers={"Last-Event-ID": str(last_seen)}
        ) as source:
            rest = list(source.iter_sse())  # ends by itself after the terminal state

        stored = c.get(url, params={"format": "json"}).json()
        assert [int(e.id) for e in rest] == [e["id"] for e in stored if e["id"] > last_seen]
        assert [int(e.id) for e in first + rest] == [e["id"] for e in stored]
        assert [e.event for e in rest] == ["stdout", "stdout", "state", "state", "state"]
        assert json.loads(rest[-1].data)["data"]["state"] == "settled"


def test_concurrent_polls_over_http_share_nothing(server: str) -> None:
    with httpx.Client(base_url=server, timeout=20) as c:
        providers = [_register(c, f"racer-{i}") for i in range(2)]
        answers: list[httpx.Response] = []

        def poll(pid: str, auth: dict[str, str]) -> None:
            with httpx.Client(base_url=server, timeout=20) as own:
                answers.append(
                    own.post(f"/v1/providers/{pid}/lease", params={"wait": 1}, headers=auth)
                )

        threads = [threading.Thread(target=poll, args=p) for p in providers]
        for t in threads:
            t.start()
        time.sleep(0.3)
        task_id = _submit(c)
        for t in threads:
            t.join(15)
        assert sorted(r.status_code for r in answers) == [200, 204]
        [won] = [r for r in answers if r.status_code == 200]
        assert won.json()["task"]["id"] == task_id
        auth = providers[0][1] if won.json()["provider_id"] == providers[0][0] else providers[1][1]
        c.post(f"/v1/leases/{won.json()['id']}/result", json={}, headers=auth)


def test_a_provider_that_hangs_up_mid_poll_takes_no_task(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as c:
        pid, auth = _register(c, "impatient")
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server, timeout=0.3) as short:
            short.post(f"/v1/providers/{pid}/lease", params={"wait": 5}, headers=auth)
        task_id = _submit(c)
        time.sleep(0.8)
        assert c.get(f"/v1/tasks/{task_id}").json()["state"] == "queued"
        other, other_auth = _register(c, "patient")
        lease = c.post(f"/v1/providers/{other}/lease", params={"wait": 2}, headers=other_auth)
        assert lease.json()["task"]["id"] == task_id
        c.post(f"/v1/leases/{lease.json()['id']}/result", json={}, headers=other_auth)


def test_bad_input_over_http_gets_error_bodies_not_tracebacks(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as c:
        r = c.post("/v1/tasks", content=b"\xff\xfe{", headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and set(r.json()) == {"detail", "field"}
        assert "Traceback" not in r.text
        r = c.put(f"/v1/blobs/{sha(b'a')}", content=b"b")
        assert r.status_code == 400
        assert c.get("/v1/health").json()["status"] == "ok"
