"""One devnet per test session: a real coordinator and 2 provider processes on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Devnet:
    url: str
    home: Path
    data_dir: Path

    def env(self) -> dict[str, str]:
        return {"GENSYN_HOME": str(self.home), "GENSYN_NETWORK": self.url}

    def auth(self) -> dict[str, str]:
        """The session stored for the notebook user (the kernel's), as a header; ``{}`` if none.

        The coordinator shows a task to its owner's session only, so a test
        that reads the notebook's tasks straight from the coordinator sends it
        (the same file ``gensyn_jupyter.config.session_file`` names).
        """
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", self.url.split("://", 1)[-1]).strip("_")
        try:
            token = json.loads((self.home / "sessions" / f"{safe}.json").read_text())["token"]
        except (OSError, ValueError, KeyError):
            return {}
        return {"Authorization": f"Bearer {token}"}


def gensyn(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout
