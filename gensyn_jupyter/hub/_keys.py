"""One chain account per JupyterHub user, made the first time the user needs one.

Keys are plain hex in ``<data dir>/keys/<user>.json``, mode 0600 in a 0700
folder, readable only by the service's own system user. They are class
accounts on a devnet (play money), signed with by the service within the
instructor's budget; a student never sees the key.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

__all__ = ["StudentKeys", "user_file_name"]

_SAFE = re.compile(r"[A-Za-z0-9_-]")


def user_file_name(user: str) -> str:
    """A file name for ``user`` that no two names share and that cannot climb out (``..``)."""
    if not user:
        raise ValueError("a user name must not be empty")
    escaped = "".join(ch if _SAFE.fullmatch(ch) else f"%{ord(ch):02X}" for ch in user)
    return f"{escaped}.json"


class StudentKeys:
    """The students' keys under ``directory`` (created 0700 on first use).

    Parameters
    ----------
    directory
        The folder of key files.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._cache: dict[str, LocalAccount] = {}

    def __repr__(self) -> str:
        return f"StudentKeys(directory={str(self.directory)!r})"

    def account(self, user: str) -> LocalAccount:
        """The account of ``user``, made and stored (0600) when the user has none yet."""
        with self._lock:
            cached = self._cache.get(user)
            if cached is not None:
                return cached
            path = self.directory / user_file_name(user)
            account = self._read(path, user) if path.exists() else self._create(path, user)
            self._cache[user] = account
            return account

    def address(self, user: str) -> str | None:
        """The address of ``user``, or None when no key was made for them yet."""
        path = self.directory / user_file_name(user)
        if user not in self._cache and not path.exists():
            return None
        return str(self.account(user).address)

    def users(self) -> list[str]:
        """Every user who has a key, sorted."""
        found: list[str] = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.json")):
            try:
                raw: Any = json.loads(path.read_text())
                found.append(str(raw["user"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(found)

    def _create(self, path: Path, user: str) -> LocalAccount:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        account: LocalAccount = Account.create()
        body = {"user": user, "address": account.address, "key": "0x" + bytes(account.key).hex()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return account

    @staticmethod
    def _read(path: Path, user: str) -> LocalAccount:
        try:
            raw: Any = json.loads(path.read_text())
            if raw["user"] != user:
                raise ValueError(f"it belongs to {raw['user']!r}")
            account: LocalAccount = Account.from_key(raw["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Never repeat the file's content: it holds a key.
            raise RuntimeError(
                f"the key file {path} of {user!r} is damaged ({type(exc).__name__})"
            ) from None
        return account
