"""With no network configured, the first cell starts a devnet and says so."""

from __future__ import annotations

import pytest

from gensyn_jupyter.config import read_devnet_state

from ._kernel import started_kernel


@pytest.mark.timeout(400)
def test_first_cell_starts_a_local_devnet(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("fresh-home")
    monkeypatch.delenv("GENSYN_NETWORK", raising=False)
    with started_kernel({"GENSYN_HOME": str(home), "GENSYN_NETWORK": ""}) as k:
        try:
            k.run("%load_ext gensyn_jupyter")
            run = k.run("%%gensyn_train\nx = 40 + 2\n")
            assert run.status == "ok", run.text
            assert run.stdout.count("started a local devnet at http://127.0.0.1:") == 1
            assert k.run("print(x)").stdout.strip() == "42"
            status = k.run("%gensyn devnet status")
            assert "devnet-1" in status.stdout and "devnet-2" in status.stdout
            again = k.run("%%gensyn_train\ny = 1\n")
            assert "started a local devnet" not in again.stdout
        finally:
            down = k.run("%gensyn devnet down")
    assert "devnet stopped" in down.stdout
    assert read_devnet_state(home / "devnet") is None
