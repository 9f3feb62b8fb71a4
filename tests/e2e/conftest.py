"""A real IPython kernel per test module, on the session's devnet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._devnet import Devnet
from ._kernel import Kernel, started_kernel


@pytest.fixture(scope="module")
def kernel(devnet: Devnet) -> Iterator[Kernel]:
    with started_kernel(devnet.env()) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch")
        assert setup.status == "ok", setup.text
        yield k
