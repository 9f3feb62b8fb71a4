"""A real JupyterHub on loopback, and a kernel of a user's server driven over its websocket."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import websocket

from gensyn_jupyter.devnet import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "jupyterhub_config.py"
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
BUILT_LABEXTENSION = REPO / "gensyn_jupyter" / "labextension"  # npm run build
JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")

_TEST_CONFIG = """\
c = get_config()  # noqa: F821
load_subconfig({example!r})  # noqa: F821 (the documented example, unchanged)
# Only what a test needs on top: free internal ports, and an admin token to drive the Hub.
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.services = [*c.JupyterHub.services, {{"name": "test-admin", "api_token": {token!r}}}]
# A loaded 2-core machine starts three servers at once: give them time (default 30 s).
c.Spawner.http_timeout = 150
c.Spawner.start_timeout = 150
# Users' labs load this checkout's build of the panel (JUPYTER_PATH before the installed copy).
c.Spawner.environment = {{**c.Spawner.environment, "JUPYTER_PATH": {jupyter_path!r}}}
c.JupyterHub.load_roles = [
    *c.JupyterHub.load_roles,
    {{
        "name": "test-admin",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
        "services": ["test-admin"],
    }},
]
"""


def hub_log_tail(state: Path, chars: int = 6000) -> str:
    try:
        return (state / "hub.log").read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Hub:
    """A started Hub: its public URL, an admin token, and every process it started."""

    url: str
    admin_token: str
    state: Path
    proc: subprocess.Popen[bytes]
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def track(self) -> None:
        """Remember the Hub's descendants now (the proxy, the service, users' servers)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def api(self, method: str, path: str, timeout: float = 30, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=timeout, **kwargs
        )

    def user_token(self, user: str) -> str:
        reply = self.api("POST", f"/users/{user}/tokens", json={"note": "test"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["token"])

    def start_servers(self, users: tuple[str, ...], timeout: float = 180) -> None:
        """Start the users' servers through the Hub API (all at once), until each is ready."""
        # The Hub answers a start after up to 10 s (slow_spawn_timeout): ask for all at once.
        with ThreadPoolExecutor(len(users)) as pool:
            replies = pool.map(
                lambda u: self.api("POST", f"/users/{u}/server", timeout=timeout), users
            )
            for reply in replies:
                assert reply.status_code in (201, 202), reply.text
        waiting = list(users)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            model = self.api("GET", f"/users/{waiting[0]}").json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                waiting.pop(0)
                self.track()
                continue
            self._check_alive()
            time.sleep(0.5)
        if waiting:
            raise AssertionError(f"{waiting}'s server not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return hub_log_tail(self.state)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the Hub exited ({self.proc.returncode}):\n{self.log()}")


def _wait_ready(hub: Hub, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = ["/hub/api/", "/services/gensyn/v1/health"]
    while pending and time.monotonic() < deadline:
        hub._check_alive()
        hub.track()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(hub.url + pending[0], timeout=2).status_code == 200:
                pending.pop(0)
                continue
        time.sleep(0.2)
    if pending:
        raise AssertionError(f"{pending[0]} did not answer in {timeout} s:\n{hub.log()}")


def _stop(hub: Hub) -> None:
    """Stop the Hub (it stops its servers, service and proxy), then anything it left behind."""
    hub.track()
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)
        try:
            hub.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait()
    left = [p for p in hub.seen.values() if p.is_running()]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


@contextlib.contextmanager
def running_hub(state: Path, env: dict[str, str]) -> Iterator[Hub]:
    """The example config's Hub, on free loopback ports, with ``env`` (GENSYN_HOME ...)."""
    state.mkdir(parents=True, exist_ok=True)
    public, service = free_port(), free_port()
    token = secrets.token_hex(32)
    jupyter_path = state / "jupyter"
    (jupyter_path / "labextensions").mkdir(parents=True, exist_ok=True)
    if (BUILT_LABEXTENSION / "package.json").is_file():
        (jupyter_path / "labextensions" / "gensyn-jupyter").symlink_to(BUILT_LABEXTENSION)
    config = state / "test_jupyterhub_config.py"
    config.write_text(
        _TEST_CONFIG.format(
            example=str(EXAMPLE),
            hub_port=free_port(),
            proxy_api_port=free_port(),
            token=token,
            jupyter_path=str(jupyter_path),
        )
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GENSYN_", "JUPYTERHUB_"))}
    hub_env = {
        **base,
        **env,
        "GENSYN_HUB_URL": f"http://127.0.0.1:{public}",
        "GENSYN_CLASS_SERVICE_URL": f"http://127.0.0.1:{service}",
        "GENSYN_HUB_STATE": str(state),
        "GENSYN_TEST_RUN": uuid.uuid4().hex,
    }
    log = open(state / "hub.log", "wb")  # noqa: SIM115 (the Hub writes to it)
    proc = subprocess.Popen(
        [str(JUPYTERHUB), "-f", str(config)],
        cwd=state,
        env=hub_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hub = Hub(url=f"http://127.0.0.1:{public}", admin_token=token, state=state, proc=proc)
    try:
        _wait_ready(hub)
        yield hub
    finally:
        _stop(hub)
        log.close()


@dataclass
class CellRun:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: str = ""

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + self.error


class RemoteKernel:
    """A kernel of a user's server, started and driven through the Hub's proxy.

    The REST API starts it (``POST /user/<name>/api/kernels``) and its
    websocket (``.../channels``) carries the messages, as in JupyterLab, so
    the kernel has exactly the environment the spawner gave the server.
    """

    def __init__(self, hub: Hub, user: str, token: str) -> None:
        self.base = f"{hub.url}/user/{user}/api/kernels"
        self.headers = {"Authorization": f"token {token}"}
        reply = httpx.post(self.base, headers=self.headers, json={"name": "python3"}, timeout=60)
        assert reply.status_code == 201, reply.text
        self.id = str(reply.json()["id"])
        ws_url = self.base.replace("http://", "ws://", 1) + f"/{self.id}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {token}"], timeout=30
        )
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 180) -> CellRun:
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": self.session,
                        "username": "test",
                        "date": "",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        run = CellRun(status="")
        deadline = time.monotonic() + timeout
        idle = False
        while time.monotonic() < deadline and not (idle and run.status):
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                break
            if isinstance(frame, bytes):
                continue  # a message with binary buffers (the widget's): not output we read
            msg = json.loads(frame)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    run.stdout += content["text"]
                else:
                    run.stderr += content["text"]
            elif kind == "error":
                run.error += "\n".join(content["traceback"])
            elif kind == "execute_reply":
                run.status = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        if not run.status:
            raise AssertionError(f"the cell did not finish in {timeout} s; so far:\n{run.text}")
        return run

    def close(self) -> None:
        """Hang up; the kernel goes with its server when the Hub stops it."""
        with contextlib.suppress(Exception):
            self.ws.close()
