"""Where gensyn keeps its files and which network a notebook talks to.

Shared by the kernel, the devnet and the command line; holds no logic beyond
reading the environment and ``~/.gensyn/config.toml``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
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
    "read_session_token",
    "running_devnet",
    "session_file",
    "write_session",
]


def gensyn_home() -> Path:
    """``$GENSYN_HOME`` or ``~/.gensyn``."""
    env = os.environ.get("GENSYN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".gensyn"


def devnet_dir() -> Path:
    """State of the local devnet: database, blobs, logs, ``devnet.json``."""
    return gensyn_home() / "devnet"


def session_file(network: str, *, home: Path | None = None) -> Path:
    """Where the session token of ``network`` is kept (written by the signer, not a key).

    ``home``: another ``GENSYN_HOME`` than this process's (tests reading a devnet's).
    """
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", network.split("://", 1)[-1]).strip("_")
    return (home or gensyn_home()) / "sessions" / f"{safe}.json"


def write_session(network: str, *, token: str, address: str, expires_at: float) -> Path:
    """Store a session token for ``network`` (mode 0600), atomically."""
    path = session_file(network)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"network": network, "token": token, "address": address, "expires_at": expires_at},
            handle,
        )
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, data: Any, *, dir_mode: int = 0o777) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old file or the new one.

    A temporary file in the same folder, flushed to disk, then renamed over
    ``path``; on failure the temporary file is removed and the error raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_session_token(network: str) -> str | None:
    """``$GENSYN_SESSION``, else the stored session token of ``network`` while it is valid."""
    env = os.environ.get("GENSYN_SESSION", "").strip()
    if env:
        return env
    try:
        raw: Any = json.loads(session_file(network).read_text())
        if float(raw["expires_at"]) > time.time():
            return str(raw["token"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


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
    rpc_url: str | None = None
    chain_id: int | None = None
    market: str | None = None

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
            rpc_url=raw.get("rpc_url"),
            chain_id=raw.get("chain_id"),
            market=raw.get("market"),
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
