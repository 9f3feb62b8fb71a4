"""The plumbing of ``classroom.ipynb``: a devnet, and a real JupyterHub running the class service.

Everything here is what an instructor would do in a terminal: ``gensyn devnet
up --detach`` (anvil, a coordinator, two providers) and ``jupyterhub -f
jupyterhub_config.py``, where the config file loads the documented
``examples/jupyterhub_config.py`` unchanged and sets only the class (who is in
it, the budgets) and free loopback ports on top. The Hub starts
configurable-http-proxy and the class service (a managed Hub service) itself.

The notebook's own kernel then plays a student's kernel: :meth:`Classroom.sit_in_as`
gives it the two variables the Hub's spawner gives every student's server
(``GENSYN_NETWORK``, the class service behind the Hub's proxy, and
``GENSYN_SESSION``, a Hub API token of that student), so a ``%%gensyn_train``
cell goes where a student's would and reads what a student's reads.

The Hub's pid goes to ``$GENSYN_HOME/hub-*/jupyterhub.pid`` (the example config's
``pid_file``) so that a test can stop what is left if the notebook dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx
from web3 import HTTPProvider, Web3

from gensyn_jupyter.config import read_devnet_state
from gensyn_jupyter.protocol import format_eth

__all__ = ["Classroom"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "jupyterhub_config.py"
_WAIT = 120.0  # seconds: every wait below is bounded
_ETH = 10**18
_NOT_PASSED_ON = ("GENSYN_", "JUPYTERHUB_")

_CONFIG = """\
c = get_config()  # noqa: F821
load_subconfig({example!r})  # noqa: F821 (the documented example, unchanged)

# The class. The class service reads c.GensynClass from this file, not from the example.
for service in c.JupyterHub.services:
    if service["name"] == "gensyn":
        service["command"] = [*service["command"][:-1], {config!r}]
c.Authenticator.allowed_users = {students}
c.Authenticator.admin_users = {{{instructor!r}}}
c.GensynClass.budget_wei = {budget_wei!r}
c.GensynClass.budget_overrides = {overrides!r}

# Free loopback ports for the Hub's own API and the proxy's, and a token for this notebook.
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
notebook = {{"name": "classroom-notebook", "api_token": {token!r}}}
c.JupyterHub.services = [*c.JupyterHub.services, notebook]
role = {{"name": "classroom-notebook", "scopes": ["admin:users", "tokens"]}}
c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, {{**role, "services": ["classroom-notebook"]}}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gensyn(*args: str, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=_WAIT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gensyn {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")


class Classroom:
    """A devnet and a JupyterHub with the class service, started for a notebook."""

    def __init__(self, home: Path, *, created: bool, students: list[str], instructor: str) -> None:
        self.home = home
        self.state = Path(tempfile.mkdtemp(prefix="hub-", dir=home))  # the Hub's, this run's
        self.students = students
        self.instructor = instructor
        self._created = created
        self._hub: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._tokens: dict[str, str] = {}
        self._admin_token = secrets.token_hex(32)
        self.url = ""
        devnet = read_devnet_state(home / "devnet")
        if devnet is None or not devnet.rpc_url:
            raise RuntimeError(f"no devnet with a chain runs under {home}")
        self.devnet_url = devnet.url
        self.w3 = Web3(HTTPProvider(devnet.rpc_url))
        self.config_text = ""
        atexit.register(self.stop)

    # -- starting and stopping -------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        students: list[str],
        instructor: str,
        budget_eth: float,
        budget_overrides_eth: dict[str, float] | None = None,
    ) -> Classroom:
        """A devnet under ``$GENSYN_HOME`` (else a new temporary folder) and the class's Hub."""
        env_home = os.environ.get("GENSYN_HOME", "").strip()
        home = Path(env_home) if env_home else Path(tempfile.mkdtemp(prefix="gensyn-classroom-"))
        env = {**os.environ, "GENSYN_HOME": str(home)}
        created = read_devnet_state(home / "devnet") is None
        if created:
            _gensyn("devnet", "up", "--detach", "--providers", "2", env=env)
        room = cls(home, created=created, students=students, instructor=instructor)
        overrides = {u: int(eth * _ETH) for u, eth in (budget_overrides_eth or {}).items()}
        room._start_hub(budget_wei=int(budget_eth * _ETH), overrides=overrides)
        return room

    def _start_hub(self, *, budget_wei: int, overrides: dict[str, int]) -> None:
        public, service = _free_port(), _free_port()
        config = self.state / "jupyterhub_config.py"
        self.config_text = _CONFIG.format(
            example=str(EXAMPLE),
            config=str(config),
            students="{" + ", ".join(repr(u) for u in sorted(self.students)) + "}",
            instructor=self.instructor,
            budget_wei=budget_wei,
            overrides=overrides,
            hub_port=_free_port(),
            proxy_api_port=_free_port(),
            token=self._admin_token,
        )
        config.write_text(self.config_text)
        # This kernel may itself run under a Hub or against a network: none of that goes on.
        base = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_PASSED_ON)}
        env = {
            **base,
            "GENSYN_HOME": str(self.home),
            "GENSYN_HUB_URL": f"http://127.0.0.1:{public}",
            "GENSYN_CLASS_SERVICE_URL": f"http://127.0.0.1:{service}",
            "GENSYN_HUB_STATE": str(self.state),
        }
        self._log = open(self.state / "hub.log", "wb")  # noqa: SIM115 (the Hub writes to it)
        self._hub = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)],
            cwd=self.state,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{public}"
        for path in ("/hub/api/", "/services/gensyn/v1/health"):
            self._wait_for(path)

    def _wait_for(self, path: str) -> None:
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            assert self._hub is not None
            if self._hub.poll() is not None:
                raise RuntimeError(f"JupyterHub exited ({self._hub.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{path} did not answer in {_WAIT:g} s:\n{self.log()}")

    def log(self, chars: int = 4000) -> str:
        """The end of the Hub's log (the Hub, the proxy and the class service write to it)."""
        try:
            return (self.state / "hub.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the Hub (it stops the proxy and the class service), then our devnet."""
        hub, self._hub = self._hub, None
        if hub is not None and hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
                hub.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        for name in ("GENSYN_NETWORK", "GENSYN_SESSION"):
            os.environ.pop(name, None)
        if self._created:
            self._created = False
            _gensyn("devnet", "down", env={**os.environ, "GENSYN_HOME": str(self.home)})
            if not os.environ.get("GENSYN_HOME"):
                shutil.rmtree(self.home, ignore_errors=True)

    # -- the Hub's users ---------------------------------------------------------------

    def token(self, user: str) -> str:
        """A JupyterHub API token of ``user`` (as the Hub gives one to each user's server)."""
        if user not in self._tokens:
            reply = httpx.post(
                f"{self.url}/hub/api/users/{user}/tokens",
                headers={"Authorization": f"token {self._admin_token}"},
                json={"note": "classroom notebook"},
                timeout=30,
            )
            if reply.status_code != 201:
                raise RuntimeError(f"the Hub refused a token for {user}: {reply.text}")
            self._tokens[user] = str(reply.json()["token"])
        return self._tokens[user]

    def service(self, method: str, path: str, *, as_user: str) -> httpx.Response:
        """Call the class service through the Hub's proxy with ``as_user``'s Hub token."""
        return httpx.request(
            method,
            f"{self.url}/services/gensyn/{path}",
            headers={"Authorization": f"token {self.token(as_user)}"},
            timeout=60,
        )

    def sit_in_as(self, student: str) -> None:
        """Give this kernel the environment the Hub's spawner gives ``student``'s server."""
        os.environ["GENSYN_NETWORK"] = f"{self.url}/services/gensyn"
        os.environ["GENSYN_SESSION"] = self.token(student)
        print(f"this kernel now runs cells as {student}'s kernel does:")
        print(f"  GENSYN_NETWORK={os.environ['GENSYN_NETWORK']}")
        print(f"  GENSYN_SESSION=<{student}'s JupyterHub token>")

    # -- what the instructor does ------------------------------------------------------

    def enroll(self, student: str) -> dict[str, Any]:
        """Make ``student``'s class account and fund it from the devnet's faucet now."""
        reply = self.service("POST", f"api/class/students/{student}", as_user=self.instructor)
        if reply.status_code != 200:
            raise RuntimeError(f"enrolling {student}: {reply.status_code} {reply.text}")
        view: dict[str, Any] = reply.json()
        return view

    def class_view(self, *, settled: bool = True) -> dict[str, Any]:
        """The class view as the instructor reads it; with ``settled``, once nothing is held."""
        deadline = time.monotonic() + _WAIT
        while True:
            reply = self.service("GET", "api/class", as_user=self.instructor)
            if reply.status_code != 200:
                raise RuntimeError(f"the class view: {reply.status_code} {reply.text}")
            view: dict[str, Any] = reply.json()
            if not settled or view["held_wei"] == 0 or time.monotonic() > deadline:
                return view
            time.sleep(0.5)

    @staticmethod
    def show(view: dict[str, Any]) -> None:
        """Print the class view as the instructor reads it: a line per student, then per task."""
        print(
            f"class on {view['coordinator']}: {format_eth(view['spent_wei'])} spent, "
            f"{format_eth(view['held_wei'])} held in escrow"
        )
        head = f"{'student':8} {'account':13} {'budget':>11} {'spent':>17} {'left':>17}  tasks"
        print(head)
        for s in view["students"]:
            address = s["address"] or "-"
            short = f"{address[:6]}…{address[-4:]}" if s["address"] else "-"
            print(
                f"{s['user']:8} {short:13} {format_eth(s['budget_wei']):>11} "
                f"{format_eth(s['spent_wei']):>17} {format_eth(s['left_wei']):>17}  "
                f"{len(s['tasks'])}"
            )
        print()
        print(
            f"{'task':13} {'student':8} {'state':10} {'provider':9} {'verify':7} "
            f"{'verification':12} paid"
        )
        for s in view["students"]:
            for t in s["tasks"]:
                print(
                    f"{t['id']:13} {s['user']:8} {t['state']:10} {t['provider'] or '-':9} "
                    f"{t['verify']:7} {t['verification']:12} {format_eth(t['paid_wei'])}"
                )

    def balance(self, address: str) -> int:
        """An account's balance on the class's chain, in wei."""
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))
