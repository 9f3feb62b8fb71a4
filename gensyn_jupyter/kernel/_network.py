"""Which coordinator a notebook talks to, starting the local devnet when none is set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx

from ..config import configured_network, devnet_dir, read_devnet_state

__all__ = ["devnet_command", "ensure_devnet", "resolve_network"]

_DEVNET_START_TIMEOUT = 180.0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def devnet_command(*args: str, timeout: float = _DEVNET_START_TIMEOUT) -> str:
    """Run ``gensyn devnet ARGS`` in a child process and return what it printed.

    Raises
    ------
    RuntimeError
        With the command's own explanation when it fails.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", "devnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip() or f"exit code {proc.returncode}")
    return proc.stdout.strip()


def ensure_devnet(say: Callable[[str], None]) -> str:
    """The URL of the local devnet, started in the background if it is not running."""
    state = read_devnet_state()
    if state is not None and _healthy(state.url):
        return state.url
    devnet_command("up", "--detach")
    state = read_devnet_state()
    if state is None:
        raise RuntimeError(f"the devnet started but wrote no state under {devnet_dir()}")
    say(
        f"started a local devnet at {state.url} (coordinator + {state.providers} providers, "
        f"state in {devnet_dir()}); stop it with %gensyn devnet down"
    )
    return state.url


def resolve_network(explicit: str | None, *, say: Callable[[str], None]) -> str:
    """``--network``, else ``$GENSYN_NETWORK`` / ``config.toml``, else the local devnet."""
    url = (explicit or "").strip().rstrip("/") or configured_network()
    return url if url else ensure_devnet(say)
