"""Fixtures shared by the end-to-end and browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gensyn_jupyter.chain  # noqa: F401  (first: imports py_ecc keeping the recursion limit)

from ._devnet import Devnet, detached_devnet


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
    with detached_devnet(home, "--providers", "2", "--lease-ttl", "4") as net:
        yield net
