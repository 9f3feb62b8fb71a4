"""Where gensyn keeps its files and which network a notebook talks to.

Shared by the kernel, the devnet and the command line; holds no logic beyond
reading the environment and ``~/.gensyn/config.toml``.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DevnetState",
    "configured_network",
    "devnet_dir",
    "gensyn_home",
    "pid_alive",
    "read_devnet_state",
    "running_devnet",
]


def gensyn_home() -> Path:
    """``$GENSYN_HOME`` or ``~/.gensyn``."""
    env = os.environ.get("GENSYN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".gensyn"


def devnet_dir() -> Path:
    """State of the local devnet: database, blobs, logs, ``devnet.json``."""
    return gensyn_home() / "devnet"


def configured_network() -> str | None:
    """The network URL from ``$GENSYN_NETWORK`` or ``config.toml``'s ``network``.

    ``None`` means no network is configured: use (and start) the local devnet.

    Raises
    ------
    ValueError
        When ``config.toml`` exists but cannot be read as TOML.
    """
    env = os.environ.get("GENSYN_NETWORK", "").strip()
    if env:
        return env.rstrip("/")
    path = gensyn_home() / "config.toml"
    if not path.exists():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc}); fix or delete it") from exc
    value = data.get("network")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{path}: 'network' must be a URL string, got {value!r}")
    return value.strip().rstrip("/")


@dataclass(frozen=True)
class DevnetState:
    """What a running devnet wrote to ``devnet.json``."""

    pid: int
    url: str
    providers: int
    data_dir: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def read_devnet_state(directory: Path | None = None) -> DevnetState | None:
    """The devnet's ``devnet.json``, or ``None`` when absent or unreadable."""
    path = (directory or devnet_dir()) / "devnet.json"
    try:
        raw: Any = json.loads(path.read_text())
        return DevnetState(
            pid=int(raw["pid"]),
            url=str(raw["url"]),
            providers=int(raw["providers"]),
            data_dir=str(raw["data_dir"]),
            started_at=float(raw["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_devnet(directory: Path | None = None) -> DevnetState | None:
    """The devnet's state when its supervisor is alive, else ``None``."""
    state = read_devnet_state(directory)
    return state if state is not None and pid_alive(state.pid) else None
