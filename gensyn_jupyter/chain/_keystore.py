"""Encrypted keystore of the signer: Web3 Secret Storage v3 files with a scrypt KDF.

One file per account, ``<checksum address>.json``, mode 0600 inside a 0700
directory. A key is decrypted only by :meth:`Keystore.unlock` and held in
memory until :meth:`Keystore.lock` or until its time to live runs out; it is
never written unencrypted, never logged, and never part of a ``repr``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from jupyter_core.paths import jupyter_data_dir

__all__ = [
    "DEFAULT_SCRYPT_N",
    "Keystore",
    "KeystoreError",
    "KeystoreLocked",
    "WrongPassphrase",
    "default_keystore_dir",
]

DEFAULT_SCRYPT_N = 2**18
"""The standard scrypt work factor of Web3 Secret Storage (about a second per unlock)."""

_MIN_PASSPHRASE = 8
_FILE_NAME = re.compile(r"^0x[0-9a-fA-F]{40}\.json$")
_KEY_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class KeystoreError(Exception):
    """A keystore operation that cannot be done, with what to do about it."""


class KeystoreLocked(KeystoreError):
    """The account's key is not unlocked (or its unlock has expired)."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not decrypt the key file."""


def default_keystore_dir() -> Path:
    """Where the signer keeps its keystore files.

    Returns
    -------
    Path
        ``$GENSYN_KEYSTORE_DIR`` when set, else ``<jupyter data dir>/gensyn/keystore``.
    """
    env = os.environ.get("GENSYN_KEYSTORE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(jupyter_data_dir()) / "gensyn" / "keystore"


def _parse_private_key(text: str) -> bytes:
    """32 key bytes from hex text; the error never repeats the text."""
    text = text.strip()
    if not _KEY_HEX.match(text):
        raise ValueError(
            "not a private key: expected 64 hex characters (32 bytes), optionally prefixed with 0x"
        )
    key = bytes.fromhex(text.removeprefix("0x"))
    if not 0 < int.from_bytes(key, "big") < _SECP256K1_N:
        raise ValueError("not a private key: the value is outside the secp256k1 key range")
    return key


def _decrypt_keyfile(path: Path, passphrase: str) -> LocalAccount:
    """Decrypt a v3 keystore file; :class:`KeystoreError` names the file, never the secret."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        kdf = data["crypto"]["kdf"]
    except FileNotFoundError as exc:
        raise KeystoreError(f"keystore file {path} does not exist") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{path} is not a readable keystore file ({exc})") from exc
    if kdf not in ("scrypt", "pbkdf2"):
        raise KeystoreError(f"{path} uses the unsupported key derivation {kdf!r}")
    try:
        key = Account.decrypt(data, passphrase)
    except Exception as exc:  # eth-keyfile raises several kinds for a damaged file
        if isinstance(exc, ValueError) and "MAC mismatch" in str(exc):
            raise WrongPassphrase(f"wrong passphrase for {_file_address(path, data)}") from None
        raise KeystoreError(f"{path} is not a valid keystore file ({exc!r})") from None
    account: LocalAccount = Account.from_key(key)
    return account


def _file_address(path: Path, data: dict[str, Any]) -> str:
    raw = data.get("address")
    if isinstance(raw, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]{40}", raw):
        return to_checksum_address("0x" + raw.removeprefix("0x"))
    return str(path)


def _check_new_passphrase(passphrase: str) -> None:
    if not passphrase:
        raise KeystoreError("the passphrase must not be empty")
    if len(passphrase) < _MIN_PASSPHRASE:
        raise KeystoreError(f"the passphrase must be at least {_MIN_PASSPHRASE} characters long")


class Keystore:
    """The signer's encrypted keys, and the ones unlocked for signing right now.

    Parameters
    ----------
    directory
        Where the keystore files live (see :func:`default_keystore_dir`);
        created with mode 0700 when the first key is added.
    scrypt_n
        The scrypt work factor for new files. The default is the standard one;
        tests pass a small value such as ``2**10``.
    clock
        Monotonic seconds, for the time to live of unlocks (tests pass a fake).
    """

    def __init__(
        self,
        *,
        directory: Path,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1):
            raise ValueError(f"scrypt_n must be a power of two above 1, got {scrypt_n}")
        self.directory = Path(directory)
        self._scrypt_n = scrypt_n
        self._clock = clock
        self._unlocked: dict[str, tuple[LocalAccount, float | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keystore(directory={str(self.directory)!r}, unlocked={sorted(self._unlocked)!r})"

    def create(self, passphrase: str) -> str:
        """Make a new random key, store it encrypted, and return its address.

        Raises
        ------
        KeystoreError
            If the passphrase is empty or shorter than 8 characters.
        """
        _check_new_passphrase(passphrase)
        account: LocalAccount = Account.create()
        return self._store(bytes(account.key), passphrase)

    def import_key(self, private_key_hex: str, passphrase: str) -> str:
        """Store an existing private key (hex, with or without ``0x``) encrypted.

        Returns
        -------
        str
            The key's checksum address.

        Raises
        ------
        KeystoreError
            If the key is malformed (the message never repeats it), the
            passphrase is too short, or the address is already in the keystore.
        """
        try:
            key = _parse_private_key(private_key_hex)
        except ValueError as exc:
            raise KeystoreError(str(exc)) from None
        _check_new_passphrase(passphrase)
        return self._store(key, passphrase)

    def addresses(self) -> list[str]:
        """The checksum addresses of the keys in the keystore, sorted."""
        if not self.directory.is_dir():
            return []
        names = (p.name for p in self.directory.iterdir() if _FILE_NAME.match(p.name))
        return sorted(to_checksum_address(name.removesuffix(".json")) for name in names)

    def unlock(self, address: str, passphrase: str, *, ttl_seconds: float | None = None) -> None:
        """Decrypt the key of ``address`` and keep it in memory for signing.

        Parameters
        ----------
        address
            The account (any case).
        passphrase
            Its passphrase.
        ttl_seconds
            Lock it again automatically after this many seconds; ``None`` keeps
            it unlocked until :meth:`lock`.

        Raises
        ------
        KeystoreError
            ``"wrong passphrase for 0x…"`` (a :class:`WrongPassphrase`), an
            unknown address (the message lists the known ones), or an
            unreadable file.
        """
        if not passphrase:
            raise KeystoreError("the passphrase must not be empty")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        address = self._known(address)
        account = _decrypt_keyfile(self._path(address), passphrase)
        if account.address != address:
            raise KeystoreError(f"{self._path(address)} holds the key of {account.address}")
        expires = None if ttl_seconds is None else self._clock() + ttl_seconds
        with self._lock:
            self._unlocked[address] = (account, expires)

    def lock(self, address: str | None = None) -> None:
        """Forget the decrypted key of ``address``, or of every account when ``None``."""
        with self._lock:
            if address is None:
                self._unlocked.clear()
            else:
                self._unlocked.pop(_checksum(address), None)

    def is_unlocked(self, address: str) -> bool:
        """Whether ``address`` can sign now (an expired unlock is locked here)."""
        return self._live(_checksum(address)) is not None

    def account(self, address: str) -> LocalAccount:
        """The unlocked account of ``address``, to sign with.

        Raises
        ------
        KeystoreLocked
            If it is not unlocked, saying how to unlock it.
        """
        address = _checksum(address)
        account = self._live(address)
        if account is None:
            raise KeystoreLocked(
                f"{address} is locked: unlock it with its passphrase in the Gensyn panel "
                "(Wallet) or with Keystore.unlock(address, passphrase)"
            )
        return account

    def _live(self, address: str) -> LocalAccount | None:
        with self._lock:
            entry = self._unlocked.get(address)
            if entry is None:
                return None
            account, expires = entry
            if expires is not None and self._clock() >= expires:
                del self._unlocked[address]
                return None
            return account

    def _path(self, address: str) -> Path:
        return self.directory / f"{address}.json"

    def _known(self, address: str) -> str:
        address = _checksum(address)
        if self._path(address).is_file():
            return address
        known = self.addresses()
        where = f"the keystore {self.directory}"
        if not known:
            raise KeystoreError(f"{where} is empty: create or import a key first")
        raise KeystoreError(f"{address} is not in {where}; known: {', '.join(known)}")

    def _store(self, key: bytes, passphrase: str) -> str:
        data = Account.encrypt(key, passphrase, kdf="scrypt", iterations=self._scrypt_n)
        address = to_checksum_address("0x" + data["address"])
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        target = self._path(address)
        if target.exists():
            raise KeystoreError(f"{address} is already in the keystore {self.directory}")
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, target)  # fails, unlike a rename, if the address appeared meanwhile
            except FileExistsError:
                raise KeystoreError(
                    f"{address} is already in the keystore {self.directory}"
                ) from None
        finally:
            os.unlink(tmp)
        return address


def _checksum(address: str) -> str:
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise KeystoreError(f"{address!r} is not an address (0x followed by 40 hex digits)")
    return to_checksum_address(address)
