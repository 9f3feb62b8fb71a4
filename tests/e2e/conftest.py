"""One devnet for the whole e2e session: a real coordinator and 2 provider processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gensyn_jupyter.config import read_devnet_state

from ._kernel import Kernel, started_kernel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every e2e test shares the devnet: xdist runs them all on one worker."""
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.xdist_group("devnet"))


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


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    home = tmp_path_factory.mktemp("gensyn-home")
    data_dir = home / "devnet"
    env = {"GENSYN_HOME": str(home)}
    gensyn("devnet", "up", "--detach", "--providers", "2", "--lease-ttl", "4", env=env)
    state = read_devnet_state(data_dir)
    assert state is not None
    try:
        yield Devnet(url=state.url, home=home, data_dir=data_dir)
    finally:
        gensyn("devnet", "down", env=env)


@pytest.fixture(scope="module")
def kernel(devnet: Devnet) -> Iterator[Kernel]:
    with started_kernel(devnet.env()) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch")
        assert setup.status == "ok", setup.text
        yield k
