"""A real JupyterLab on loopback, driven by headless Debian chromium through playwright."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gensyn_jupyter.devnet import free_port

from .._devnet import Devnet

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path

    def page_url(self, notebook: str) -> str:
        return f"{self.url}lab/tree/{notebook}?token={self.token}"


# What keeps each front end from reaching out, and the class that holds its workspaces.
_APPS = {
    "lab": (
        "LabApp",
        [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
    ),
    "notebook": ("JupyterNotebookApp", []),  # Jupyter Notebook 7: no news, no update check
}


@contextlib.contextmanager
def _running_lab(
    root: Path, devnet: Devnet, extra: Sequence[str] = (), app: str = "lab"
) -> Iterator[tuple[str, str]]:
    """A JupyterLab (``app="notebook"``: Notebook 7) server on a free loopback port.

    Yields its URL and token; the server's log is ``root/<app>.log``.
    """
    port = free_port()
    token = secrets.token_hex(16)
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    app_class, quiet = _APPS[app]
    log_path = root / f"{app}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (the server writes to it)
    proc = subprocess.Popen(
        [
            jupyter,
            app,
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            *quiet,
            f"--ServerApp.root_dir={root}",
            # a workspace of its own: the user's default one may restore notebooks
            # of earlier runs that no longer exist (an error dialog blocks every click)
            f"--{app_class}.workspaces_dir={root / '.workspaces'}",
            # and settings of its own: a theme or setting changed by another run
            # (or by a person on this machine) must not leak into the test
            f"--{app_class}.user_settings_dir={root / '.settings'}",
            *extra,
        ],
        env={**os.environ, **devnet.env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}api/status", params={"token": token}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            time.sleep(0.25)
        else:
            raise RuntimeError(f"jupyter {app} did not start in 90 s")
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def lab(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab-root")
    with _running_lab(root, devnet) as (url, token):
        yield Lab(url=url, token=token, root=root)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless chromium for one test module.

    Module-scoped on purpose: playwright's sync API keeps an asyncio loop
    running in this thread while it is open, and an async test that runs
    later on the same xdist worker would fail with "Cannot run the event loop
    while another loop is running".
    """
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            "Debian chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass(frozen=True)
class PanelLab(Lab):
    """A JupyterLab whose wallet keeps its keys in ``keystore`` (cheap scrypt)."""

    keystore: Path


# The built extension of this checkout (npm run build:lib && npm run build:labextension:dev).
BUILT_LABEXTENSION = Path(__file__).resolve().parents[2] / "gensyn_jupyter" / "labextension"


@pytest.fixture(scope="module")
def panel_lab(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelLab]:
    """A JupyterLab of its own for the sidebar panel's tests, on the session devnet.

    Its wallet uses an empty keystore in a temporary directory (scrypt 2**10, so an
    unlock is fast), never the user's; the auto-approve budget there is off, so a
    task waits in the panel. The labextension is loaded from this checkout's build
    (``extra_labextensions_path`` comes before the installed copy), so a rebuilt
    panel is tested without reinstalling the package.
    """
    root = tmp_path_factory.mktemp("panel-lab-root")
    keystore = tmp_path_factory.mktemp("panel-keystore") / "keystore"
    extensions = tmp_path_factory.mktemp("panel-labextensions")
    if (BUILT_LABEXTENSION / "package.json").is_file():
        (extensions / "gensyn-jupyter").symlink_to(BUILT_LABEXTENSION)
    extra = [
        f"--LabApp.extra_labextensions_path={extensions}",
        f"--GensynServer.keystore_dir={keystore}",
        "--GensynServer.keystore_scrypt_n=1024",
    ]
    with _running_lab(root, devnet, extra) as (url, token):
        yield PanelLab(url=url, token=token, root=root, keystore=keystore)
