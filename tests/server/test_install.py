"""The extension is enabled by the installed package and closes its client on shutdown."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import gensyn_jupyter
from gensyn_jupyter.server import GensynServer

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_config_file_enables_the_extension() -> None:
    config = json.loads((_ROOT / "jupyter-config/server-config/gensyn_jupyter.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"gensyn_jupyter": True}}}
    points = gensyn_jupyter._jupyter_server_extension_points()
    assert points == [{"module": "gensyn_jupyter.server", "app": GensynServer}]


def test_jupyter_server_extension_list_shows_it_enabled_and_ok(tmp_path: pathlib.Path) -> None:
    installed = pathlib.Path(sys.prefix, "etc/jupyter/jupyter_server_config.d/gensyn_jupyter.json")
    assert installed.exists(), (
        f"{installed} is missing: run `pip install --no-build-isolation -e '.[dev]'` "
        "(pyproject.toml's shared-data installs it)"
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path), "NO_COLOR": "1"}
    jupyter = pathlib.Path(sys.executable).with_name("jupyter")
    proc = subprocess.run(
        [str(jupyter), "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out
    assert re.search(r"^\s*gensyn_jupyter\s+enabled\s*$", out, re.M), out
    assert re.search(
        rf"^\s*gensyn_jupyter {re.escape(gensyn_jupyter.__version__)}\s+OK\s*$", out, re.M
    ), out


async def test_shutdown_closes_the_coordinator_client(jp_serverapp: Any, jp_fetch: Any) -> None:
    extension = jp_serverapp.extension_manager.extension_points["gensyn_jupyter"].app
    assert isinstance(extension, GensynServer)
    await jp_fetch("gensyn", "api", "health")
    proxy = extension.proxy
    assert not proxy.closed
    await jp_serverapp.cleanup_extensions()
    assert proxy.closed
