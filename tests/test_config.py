from __future__ import annotations

from pathlib import Path

import pytest

from gensyn_jupyter.config import configured_network, devnet_dir, read_devnet_state


def test_no_network_configured_means_devnet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENSYN_HOME", str(tmp_path))
    monkeypatch.delenv("GENSYN_NETWORK", raising=False)
    assert configured_network() is None
    assert devnet_dir() == tmp_path / "devnet"
    assert read_devnet_state() is None


def test_environment_wins_over_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENSYN_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text('network = "http://example.invalid:1/"\n')
    monkeypatch.delenv("GENSYN_NETWORK", raising=False)
    assert configured_network() == "http://example.invalid:1"
    monkeypatch.setenv("GENSYN_NETWORK", "http://127.0.0.1:9")
    assert configured_network() == "http://127.0.0.1:9"


def test_broken_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENSYN_HOME", str(tmp_path))
    monkeypatch.delenv("GENSYN_NETWORK", raising=False)
    (tmp_path / "config.toml").write_text("network = [\n")
    with pytest.raises(ValueError, match=r"config\.toml is not valid TOML"):
        configured_network()
