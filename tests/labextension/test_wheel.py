"""The wheel `python -m build` makes installs into a fresh venv with both extensions on.

Runs ``tools/check_wheel.sh`` on a copy of the checkout (the build rewrites
the bundled labextension, which the browser tests of this run are loading):
``jupyter labextension list`` must show gensyn-jupyter enabled and OK, and
``jupyter server extension list`` gensyn_jupyter OK, with no build step for
the user.

To stay within the suite's time budget the fresh venv reuses the packages
already installed in this environment (GENSYN_WHEEL_REUSE_DEPS, see the
script) instead of installing torch and JupyterLab again: pip still resolves
the wheel's requirements and installs the wheel itself. node_modules is
copied as hard links, so npm finds it complete instead of reinstalling it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.xdist_group("wheel")
@pytest.mark.timeout(1500)
def test_the_built_wheel_installs_with_both_extensions_enabled(tmp_path: Path) -> None:
    if shutil.which("npm") is None or not (REPO / "node_modules").is_dir():
        pytest.fail("npm and node_modules are needed to build the wheel: run `make install`")
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    source = tmp_path / "source"
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    _link_node_modules(source / "node_modules")
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "GENSYN_WHEEL_REUSE_DEPS": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(source / "tools" / "check_wheel.sh"), str(tmp_path / "work")],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "wheel OK" in output, output[-3000:]


def _link_node_modules(target: Path) -> None:
    """A hard-linked copy of node_modules that npm (unlike a symlink) accepts as installed.

    npm replaces a symlinked node_modules with a full install (40 s). Files npm
    or the build write in place are real copies, so the checkout's stay as they are.
    """
    result = subprocess.run(
        ["cp", "-a", "-l", str(REPO / "node_modules"), str(target)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:  # another filesystem: npm installs from its cache
        shutil.rmtree(target, ignore_errors=True)
        target.symlink_to(REPO / "node_modules")
        return
    shutil.rmtree(target / ".cache", ignore_errors=True)
    lock = target / ".package-lock.json"
    if lock.exists():
        lock.unlink()
        shutil.copy2(REPO / "node_modules" / ".package-lock.json", lock)
