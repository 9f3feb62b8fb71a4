"""One devnet per test session: a real coordinator and 2 provider processes on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gensyn_jupyter.config import read_devnet_state, session_file


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
        (``gensyn_jupyter.config.session_file`` of the devnet's home).
        """
        try:
            token = json.loads(session_file(self.url, home=self.home).read_text())["token"]
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


@contextmanager
def detached_devnet(home: Path, *options: str) -> Iterator[Devnet]:
    """``gensyn devnet up --detach OPTIONS`` in ``home``, taken down on the way out."""
    env = {"GENSYN_HOME": str(home)}
    gensyn("devnet", "up", "--detach", *options, env=env)
    state = read_devnet_state(home / "devnet")
    assert state is not None
    try:
        yield Devnet(url=state.url, home=home, data_dir=home / "devnet")
    finally:
        gensyn("devnet", "down", env=env)
