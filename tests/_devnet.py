"""One devnet per test session: a real coordinator and 2 provider processes on loopback."""

from __future__ import annotations

import os
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
