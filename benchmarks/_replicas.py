"""PostgreSQL, coordinator replicas and simulated kernels and providers on loopback.

Shared by ``benchmarks/load.py`` and ``tests/coordinator/test_postgres_replicas.py``:

- :func:`running_postgres`: a throw-away PostgreSQL server (``initdb`` in a temp
  dir, ``postgres`` on a free 127.0.0.1 port, as an unprivileged user when run
  as root), stopped and deleted on exit.
- :class:`Replica`: one ``gensyn coordinator --db URL`` process; ``kill`` is
  SIGKILL, ``start`` again restarts it on the same port.
- :func:`provider_loop`: a provider client (register, long-poll a lease, fetch
  the bundle, compute ``y = x * x``, upload it, post the result), failing over
  to the next replica when one does not answer. ``python -m benchmarks._replicas
  URL [URL...]`` runs one as a process (that can be SIGKILLed).
- :func:`submit_job` / :func:`job_value`: a task whose right answer is known.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "POSTGRES_MISSING",
    "Replica",
    "job_value",
    "postgres_bin",
    "provider_loop",
    "request_any",
    "running_postgres",
    "submit_job",
]

_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_MISSING = (
    "PostgreSQL server binaries (initdb, postgres) not found: install Debian's postgresql "
    "package (`apt-get install -y -q --no-install-recommends postgresql`, or `make postgresql`)"
)


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("postgres")
    if found:
        candidates.append(str(Path(found).parent))
    for folder in candidates:
        if (Path(folder) / "postgres").is_file() and (Path(folder) / "initdb").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    from gensyn_jupyter.devnet import free_port

    return free_port()


def _postmaster_pid(data: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data / "postmaster.pid").read_text().split()[0])
    return None


@contextlib.contextmanager
def running_postgres(timeout: float = 60.0) -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1; yields its SQLAlchemy URL.

    ``fsync`` is off (a throw-away database). Raises ``RuntimeError`` naming
    what to install when the binaries are missing, or with the server's log
    when it does not start within ``timeout`` seconds.
    """
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError(POSTGRES_MISSING)
    root = Path(tempfile.mkdtemp(prefix="gensyn-pg-"))
    data, log_path = root / "data", root / "postgres.log"
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = "postgres"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            user, entry = "nobody", pwd.getpwnam("nobody")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    port = _free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        init = [str(bindir / "initdb"), "-D", str(data), "-U", "gensyn", "--auth=trust"]
        done = subprocess.run(
            [*as_user, *init, "--no-sync", "-E", "UTF8"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout.decode()}{done.stderr.decode()}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        options = [a for k, v in settings.items() for a in ("-c", f"{k}={v}")]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"postgresql+psycopg://gensyn@127.0.0.1:{port}/postgres"
        _wait_for_postgres(port, proc, log_path, timeout)
        yield url
    finally:
        _stop_postgres(proc, data)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_postgres(
    port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="gensyn", dbname="postgres", connect_timeout=2
            ):
                return
        except psycopg.OperationalError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start within {timeout:g} s:\n{log}")
        time.sleep(0.1)


def _stop_postgres(proc: subprocess.Popen[bytes] | None, data: Path) -> None:
    if proc is None:
        return
    pid = _postmaster_pid(data)
    with contextlib.suppress(ProcessLookupError):  # SIGINT: fast shutdown (clients cut)
        os.kill(pid if pid is not None else proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid is not None else proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=10)


class Replica:
    """One coordinator process on ``db_url``; replicas share ``data_dir`` (the blobs)."""

    def __init__(
        self, db_url: str, data_dir: Path, log_path: Path, *, lease_ttl: float = 15.0
    ) -> None:
        self.db_url, self.data_dir, self.log_path = db_url, data_dir, log_path
        self.lease_ttl = lease_ttl
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait (bounded) until ``/v1/health`` answers."""
        command = [sys.executable, "-m", "gensyn_jupyter", "coordinator", "--port", str(self.port)]
        command += ["--db", self.db_url, "--data-dir", str(self.data_dir)]
        command += ["--lease-ttl", f"{self.lease_ttl:g}", "--requests-per-second", "0"]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"replica {self.url} did not start:\n{log_text}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a drain), then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


_local = threading.local()


def _client() -> httpx.Client:
    """This thread's client (keep-alive; making one per request costs ~30 ms of CPU)."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=30.0)
    return client


def request_any(
    urls: Sequence[str],
    method: str,
    path: str,
    *,
    deadline: float,
    prefer: int = 0,
    **kw: Any,
) -> httpx.Response:
    """Send one request to the first replica that answers, starting at ``urls[prefer]``.

    A replica that is down (connection refused, timeout, 502/503 while it
    drains) is skipped; the round repeats until ``deadline`` (monotonic).
    """
    attempt = 0
    client = _client()
    while True:
        url = urls[(prefer + attempt) % len(urls)]
        try:
            r = client.request(method, url + path, **kw)
            if r.status_code not in (502, 503):
                return r
        except httpx.TransportError:
            pass
        attempt += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"no replica of {list(urls)} answered {method} {path}")
        if attempt % len(urls) == 0:
            time.sleep(0.2)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def job_value(n: int) -> dict[str, int]:
    """The right result of job ``n``."""
    return {"y": n * n}


def submit_job(urls: Sequence[str], n: int, *, deadline: float, prefer: int = 0) -> str:
    """Upload job ``n``'s bundle and submit it (to ``urls[prefer]`` first); its task id."""
    bundle = {
        "source": f"x = {n}\ny = x * x\n",
        "inputs": [],
        "outputs": ["y"],
        "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
    }
    data = json.dumps(bundle).encode()
    sha = _sha(data)
    r = request_any(urls, "PUT", f"/v1/blobs/{sha}", content=data, deadline=deadline, prefer=prefer)
    assert r.status_code in (200, 201), r.text
    r = request_any(
        urls, "POST", "/v1/tasks", json={"bundle": sha}, deadline=deadline, prefer=prefer
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def provider_loop(
    urls: Sequence[str],
    name: str,
    stop: threading.Event,
    *,
    work_seconds: float = 0.02,
    on_lease: Callable[[str, str], None] | None = None,
    prefer: int = 0,
) -> None:
    """Serve tasks until ``stop`` is set: ``on_lease(provider_id, task_id)`` for each lease."""
    far = time.monotonic() + 3600

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return request_any(urls, method, path, deadline=far, prefer=prefer, **kw)

    info = {"name": name, "device_type": "cpu", "cpu_count": 1, "python": "3.11", "torch": "2"}
    body = call("POST", "/v1/providers", json=info).json()
    pid, auth = body["provider"]["id"], {"Authorization": f"Bearer {body['token']}"}
    while not stop.is_set():
        r = call("POST", f"/v1/providers/{pid}/lease", params={"wait": 1}, headers=auth)
        if r.status_code == 204:
            continue
        r.raise_for_status()
        lease = r.json()
        task_id, lease_id = lease["task"]["id"], lease["id"]
        if on_lease is not None:
            on_lease(pid, task_id)
        bundle = call("GET", f"/v1/blobs/{lease['task']['spec']['bundle']}", headers=auth)
        found = re.match(r"x = (\d+)\n", bundle.json()["source"])
        assert found is not None, bundle.text
        time.sleep(work_seconds)
        values = json.dumps(job_value(int(found.group(1)))).encode()
        sha = _sha(values)
        put = call("PUT", f"/v1/blobs/{sha}", content=values, headers=auth)
        assert put.status_code in (200, 201), put.text
        manifest = {"values": sha, "outputs": [], "steps": 1}
        call("POST", f"/v1/leases/{lease_id}/result", json=manifest, headers=auth)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks._replicas NAME URL [URL...]``: one provider process.

    Prints ``lease PROVIDER_ID TASK_ID`` for each lease taken (flushed).
    """
    args = sys.argv[1:] if argv is None else argv
    name, urls = args[0], args[1:]

    def report(provider_id: str, task_id: str) -> None:
        print(f"lease {provider_id} {task_id}", flush=True)

    provider_loop(urls, name, threading.Event(), on_lease=report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
