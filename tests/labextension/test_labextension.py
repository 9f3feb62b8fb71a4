"""The JupyterLab extension is installed, enabled and loadable after `make install`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_path

REPO = Path(__file__).resolve().parents[2]
EXTENSION = "gensyn-jupyter"
PLUGIN_ID = "gensyn-jupyter:plugin"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter() -> Path:
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.exists(), f"no `jupyter` next to {sys.executable}: is jupyterlab installed?"
    return jupyter


def _installed_extension_dir() -> Path:
    """The directory JupyterLab loads the extension from (first match on its path)."""
    for base in jupyter_path("labextensions"):
        candidate = Path(base) / EXTENSION
        if (candidate / "package.json").is_file():
            return candidate
    pytest.fail(f"{EXTENSION} is in none of {jupyter_path('labextensions')}")


def test_labextension_list_shows_it_enabled_and_ok() -> None:
    result = subprocess.run(
        [str(_jupyter()), "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = _ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output
    # The status line reads "gensyn-jupyter v0.1.0 enabled OK (python, gensyn-jupyter)";
    # a disabled extension is also named under "Disabled extensions:" without a version.
    lines = [line.split() for line in output.splitlines()]
    ours = [w for w in lines if len(w) >= 4 and w[0] == EXTENSION and w[1].startswith("v")]
    assert len(ours) == 1, f"expected one status line for {EXTENSION}:\n{output}"
    _, installed_version, state, health = ours[0][:4]
    assert installed_version == f"v{version('gensyn-jupyter')}", output
    assert state == "enabled", output
    assert health == "OK", output


def test_installed_package_json_names_the_extension_and_its_plugin() -> None:
    directory = _installed_extension_dir()
    package = json.loads((directory / "package.json").read_text())
    assert package["name"] == EXTENSION
    assert package["jupyterlab"]["extension"] is True
    entry = directory / package["jupyterlab"]["_build"]["load"]
    assert entry.is_file(), f"remote entry {entry} is missing"
    bundles = sorted((directory / "static").glob("*.js"))
    assert any(PLUGIN_ID in bundle.read_text() for bundle in bundles), (
        f"no bundle under {directory / 'static'} defines the plugin {PLUGIN_ID}"
    )


def test_typescript_source_type_checks() -> None:
    tsc = REPO / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("node_modules/ is absent (npm install has not run): cannot type-check")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: cannot type-check")
    result = subprocess.run(
        [str(tsc), "--noEmit", "-p", str(REPO / "tsconfig.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
