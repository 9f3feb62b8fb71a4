"""The sidebar panel's front-end unit tests (vitest + happy-dom) pass.

`npm run test:ui-unit` renders the panel's sections with a stubbed
`requestAPI` (labextension/test/*.test.ts); this runs it so `make test`
covers the TypeScript side too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_panel_unit_tests_pass() -> None:
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        why = "node/npm not installed: the panel's unit tests need them"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; the project's set-up must install them")
        pytest.skip(why)
    if not (REPO / "node_modules" / "vitest").is_dir():
        pytest.fail("vitest is not installed: run `npm install` (make install does)")
    env = {**os.environ, "CI": "1", "NO_COLOR": "1", "VITE_CONFIG_NATIVE_IGNORE_WARNING": "true"}
    result = subprocess.run(
        [npm, "run", "--silent", "test:ui-unit"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert " passed" in output, output[-8000:]
