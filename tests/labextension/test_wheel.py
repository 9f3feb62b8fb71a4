"""The wheel `python -m build` makes installs into a fresh venv with both extensions on.

Runs ``tools/check_wheel.sh`` on a copy of the checkout (the build rewrites
the bundled labextension, which the browser tests of this run are loading):
``jupyter labextension list`` must show gensyn-jupyter enabled and OK, and
``jupyter server extension list`` gensyn_jupyter OK, with no build step for
the user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
    (source / "node_modules").symlink_to(REPO / "node_modules")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
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
