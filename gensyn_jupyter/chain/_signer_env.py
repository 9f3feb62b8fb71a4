"""The key of a headless signer, read from the environment of the process that signs.

Never from a notebook cell: the kernel has no key (see DESIGN.md). Errors
name the variable that is missing or wrong and never repeat a key or a
passphrase.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ._keystore import KeystoreError, WrongPassphrase, _decrypt_keyfile, _parse_private_key

__all__ = ["SignerConfigError", "account_from_env"]

_HELP = (
    "set GENSYN_PRIVATE_KEY to a hex private key, or GENSYN_KEYSTORE to a keystore file "
    "with GENSYN_PASSPHRASE or GENSYN_PASSPHRASE_FILE"
)


class SignerConfigError(Exception):
    """The signer's key is missing or misconfigured; the message names the variable."""


def account_from_env(environ: Mapping[str, str] | None = None) -> LocalAccount:
    """The signing account configured in the environment.

    Reads ``GENSYN_PRIVATE_KEY`` (64 hex characters, with or without ``0x``),
    or ``GENSYN_KEYSTORE`` (the path of a Web3 Secret Storage file) together
    with ``GENSYN_PASSPHRASE`` or ``GENSYN_PASSPHRASE_FILE`` (a file whose
    content, without its trailing line break, is the passphrase).

    Parameters
    ----------
    environ
        The variables to read; defaults to :data:`os.environ`.

    Returns
    -------
    LocalAccount
        The account to sign with.

    Raises
    ------
    SignerConfigError
        Naming the variable that is missing, ambiguous or invalid; the key and
        the passphrase never appear in the message.
    """
    env = os.environ if environ is None else environ
    key_hex = env.get("GENSYN_PRIVATE_KEY", "")
    keystore = env.get("GENSYN_KEYSTORE", "")
    if key_hex and keystore:
        raise SignerConfigError(
            "both GENSYN_PRIVATE_KEY and GENSYN_KEYSTORE are set: set only one of them"
        )
    if key_hex:
        try:
            key = _parse_private_key(key_hex)
        except ValueError as exc:
            raise SignerConfigError(f"GENSYN_PRIVATE_KEY is {exc}") from None
        account: LocalAccount = Account.from_key(key)
        return account
    if keystore:
        return _from_keystore(Path(keystore).expanduser(), _passphrase(env))
    raise SignerConfigError(f"no signing key is configured: {_HELP}")


def _passphrase(env: Mapping[str, str]) -> str:
    direct = env.get("GENSYN_PASSPHRASE")
    file = env.get("GENSYN_PASSPHRASE_FILE", "")
    if direct is not None and file:
        raise SignerConfigError(
            "both GENSYN_PASSPHRASE and GENSYN_PASSPHRASE_FILE are set: set only one of them"
        )
    if file:
        path = Path(file).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise SignerConfigError(
                f"GENSYN_PASSPHRASE_FILE names {path}, which cannot be read "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
        except UnicodeDecodeError:
            raise SignerConfigError(
                f"GENSYN_PASSPHRASE_FILE names {path}, which is not UTF-8 text"
            ) from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise SignerConfigError(f"GENSYN_PASSPHRASE_FILE names {path}, which is empty")
        return text
    if direct is None:
        raise SignerConfigError(
            "GENSYN_KEYSTORE is set but neither GENSYN_PASSPHRASE nor GENSYN_PASSPHRASE_FILE "
            "is: set one of them to the keystore's passphrase"
        )
    if not direct:
        raise SignerConfigError("GENSYN_PASSPHRASE is empty")
    return direct


def _from_keystore(path: Path, passphrase: str) -> LocalAccount:
    if not path.is_file():
        raise SignerConfigError(f"GENSYN_KEYSTORE names {path}, which is not a file")
    try:
        return _decrypt_keyfile(path, passphrase)
    except WrongPassphrase as exc:
        raise SignerConfigError(
            f"the passphrase (GENSYN_PASSPHRASE or GENSYN_PASSPHRASE_FILE) does not "
            f"decrypt GENSYN_KEYSTORE={path}: {exc}"
        ) from None
    except KeystoreError as exc:
        raise SignerConfigError(f"GENSYN_KEYSTORE: {exc}") from None
