"""Fixtures shared by the end-to-end and browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gensyn_jupyter.chain  # noqa: F401  (first: imports py_ecc keeping the recursion limit)
from gensyn_jupyter.config import read_devnet_state

from ._devnet import Devnet, gensyn


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the devnet run on one xdist worker, so one devnet serves them all.

    Browser tests go there too: they come last on that worker (tests/ui sorts
    after the rest), away from the async tests of the other worker.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "devnet" in fixtures or "browser" in fixtures:
            item.add_marker(pytest.mark.xdist_group("devnet"))


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
