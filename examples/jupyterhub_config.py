"""A JupyterHub for a class on the gensyn devnet (docs/jupyterhub.md explains every line).

From a checkout where `make install` ran:

    .venv/bin/gensyn devnet up --detach                        # the class's network
    .venv/bin/jupyterhub -f examples/jupyterhub_config.py      # http://127.0.0.1:8000

Students log in (any password: the dummy authenticator), open a notebook and
run `%%gensyn_train` cells with no set-up; the instructor ("teacher") reads
every student's tasks and spend at http://127.0.0.1:8000/services/gensyn/api/class.
tests/hub/test_jupyterhub.py runs this very file against a real devnet.
"""

import os
import sys
from pathlib import Path

from gensyn_jupyter.config import gensyn_home, read_devnet_state

c = get_config()  # noqa: F821 (traitlets puts it in a config file's namespace)

# Where things are. Every GENSYN_* variable is passed on to the class service,
# which reads this same file (so both processes compute the same values).
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # the environment jupyterhub runs from
PUBLIC_URL = os.environ.get("GENSYN_HUB_URL", "http://127.0.0.1:8000")
SERVICE_URL = os.environ.get("GENSYN_CLASS_SERVICE_URL", "http://127.0.0.1:10101")
STATE = Path(os.environ.get("GENSYN_HUB_STATE", gensyn_home() / "hub")).resolve()
STATE.mkdir(parents=True, exist_ok=True, mode=0o700)

# -- The class: who is in it, what the network is, what each student may spend.
STUDENTS = {"alice", "bob"}
INSTRUCTOR = "teacher"

devnet = read_devnet_state()  # `gensyn devnet up --detach` writes it (~/.gensyn/devnet)
c.GensynClass.coordinator_url = os.environ.get("GENSYN_CLASS_COORDINATOR") or (
    devnet.url if devnet else "http://127.0.0.1:8765"
)
c.GensynClass.budget_wei = 10**17  # 0.1 ETH each: about 28 GPU-hours at the devnet's rate
c.GensynClass.budget_overrides = {"bob": 5 * 10**14}  # 0.0005 ETH: about 8 GPU-minutes
c.GensynClass.per_task_wei = 0  # no per-task cap besides the budget
c.GensynClass.data_dir = str(STATE / "gensyn-class")  # students' keys (0600) and the ledger

# -- Users. Replace the dummy authenticator with your own (GitHub, LDAP, ...).
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = STUDENTS
c.Authenticator.admin_users = {INSTRUCTOR}

# -- Where the Hub listens and keeps its state.
c.JupyterHub.bind_url = PUBLIC_URL
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
proxy = HERE.parent / "node_modules" / ".bin" / "configurable-http-proxy"
if proxy.exists():  # `npm install` in the checkout; else the one on PATH (npm install -g)
    c.ConfigurableHTTPProxy.command = [str(proxy)]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")

# -- Students' servers. "simple" runs every server as the Hub's own system user:
# fine for a trusted class on one machine (see "What is isolated" in the docs);
# use LocalProcessSpawner with system users, or DockerSpawner, for more.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "home" / "{username}")
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
if os.geteuid() == 0:  # a container running as root
    c.Spawner.args = ["--allow-root"]

# What makes `%%gensyn_train` work in a student's kernel with no set-up: the class
# service is the network, and the server's own Hub token is the student's session.
c.Spawner.environment = {
    "GENSYN_NETWORK": f"{PUBLIC_URL}/services/gensyn",
    "GENSYN_SESSION": lambda spawner: spawner.api_token,
}
c.Spawner.server_token_scopes = [
    "access:servers!server",
    "users:activity!user",
    "access:services!service=gensyn",
    "read:users!user",  # the user's own model, admin flag included: the panel's Class section
]
# Every user may use the class service (the Hub's default "user" role plus one scope).
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "access:services!service=gensyn"]},
]

# -- The class service: a managed Hub service that reads c.GensynClass from this file.
c.JupyterHub.services = [
    {
        "name": "gensyn",
        "url": SERVICE_URL,
        "command": [sys.executable, "-m", "gensyn_jupyter.hub", "--config", __file__],
        "environment": {k: v for k, v in os.environ.items() if k.startswith("GENSYN_")},
        "oauth_no_confirm": True,
        "display": True,
    },
]
