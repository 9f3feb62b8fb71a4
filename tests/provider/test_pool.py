from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gensyn_jupyter.provider._hardware import detect_hardware
from gensyn_jupyter.provider._pool import worker_environment


def test_worker_environment_drops_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENSYN_PROVIDER_KEY", "0xsecret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    env = worker_environment(home=tmp_path / "home", threads=1)
    assert "GENSYN_PROVIDER_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["HOME"] == str(tmp_path / "home") and env["OMP_NUM_THREADS"] == "1"
    assert "PATH" in env
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # no spinning against the provider's own I/O


def test_hardware_describes_this_machine() -> None:
    info = detect_hardware(name="box", device="cpu")
    assert info.name == "box" and info.device_type == "cpu" and info.gpus == []
    assert info.cpu_count >= 1 and info.torch == torch.__version__
