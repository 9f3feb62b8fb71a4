"""A headless signer's key from its environment, with errors that never leak a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from gensyn_jupyter.chain._keystore import Keystore
from gensyn_jupyter.chain._signer_env import SignerConfigError, account_from_env

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address
PASS = "correct horse battery"


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    address = Keystore(directory=directory, scrypt_n=2**10).import_key(KEY, PASS)
    return directory / f"{address}.json"


def _message(env: dict[str, str]) -> str:
    with pytest.raises(SignerConfigError) as info:
        account_from_env(env)
    text = str(info.value)
    assert KEY not in text and PASS not in text
    return text


@pytest.mark.parametrize("value", [KEY, "0x" + KEY, KEY.upper(), f"  {KEY}\n"])
def test_a_hex_private_key_with_or_without_0x(value: str) -> None:
    assert account_from_env({"GENSYN_PRIVATE_KEY": value}).address == ADDRESS


def test_a_malformed_private_key_names_the_variable_not_the_value() -> None:
    bad = KEY[:-2] + "zz"
    text = _message({"GENSYN_PRIVATE_KEY": bad})
    assert text.startswith("GENSYN_PRIVATE_KEY is not a private key")
    assert bad not in text


def test_a_keystore_file_with_its_passphrase(keyfile: Path) -> None:
    env = {"GENSYN_KEYSTORE": str(keyfile), "GENSYN_PASSPHRASE": PASS}
    assert account_from_env(env).address == ADDRESS


def test_a_passphrase_file_loses_only_its_trailing_line_break(
    keyfile: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASS + "\n")
    env = {"GENSYN_KEYSTORE": str(keyfile), "GENSYN_PASSPHRASE_FILE": str(secret)}
    assert account_from_env(env).address == ADDRESS
    secret.write_text(PASS + " \n")
    assert "does not decrypt" in _message(env)


def test_a_wrong_passphrase_says_which_keystore_without_the_passphrase(keyfile: Path) -> None:
    text = _message({"GENSYN_KEYSTORE": str(keyfile), "GENSYN_PASSPHRASE": "guess me please"})
    assert "GENSYN_PASSPHRASE" in text and str(keyfile) in text
    assert f"wrong passphrase for {ADDRESS}" in text
    assert "guess me please" not in text


def test_a_keystore_without_a_passphrase_names_both_ways_to_give_one(keyfile: Path) -> None:
    text = _message({"GENSYN_KEYSTORE": str(keyfile)})
    assert "GENSYN_PASSPHRASE" in text and "GENSYN_PASSPHRASE_FILE" in text
    assert "GENSYN_PASSPHRASE is empty" in _message(
        {"GENSYN_KEYSTORE": str(keyfile), "GENSYN_PASSPHRASE": ""}
    )


def test_a_missing_or_unreadable_file_is_named(keyfile: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    text = _message({"GENSYN_KEYSTORE": str(missing), "GENSYN_PASSPHRASE": PASS})
    assert text == f"GENSYN_KEYSTORE names {missing}, which is not a file"
    text = _message({"GENSYN_KEYSTORE": str(keyfile), "GENSYN_PASSPHRASE_FILE": str(missing)})
    assert text.startswith(f"GENSYN_PASSPHRASE_FILE names {missing}, which cannot be read")
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    text = _message({"GENSYN_KEYSTORE": str(junk), "GENSYN_PASSPHRASE": PASS})
    assert text.startswith("GENSYN_KEYSTORE: ") and str(junk) in text


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({}, "no signing key is configured: set GENSYN_PRIVATE_KEY"),
        ({"GENSYN_PRIVATE_KEY": KEY, "GENSYN_KEYSTORE": "k.json"}, "set only one of them"),
        (
            {"GENSYN_KEYSTORE": "k.json", "GENSYN_PASSPHRASE": PASS, "GENSYN_PASSPHRASE_FILE": "p"},
            "both GENSYN_PASSPHRASE and GENSYN_PASSPHRASE_FILE are set",
        ),
    ],
)
def test_ambiguous_or_absent_configuration_is_refused(env: dict[str, str], why: str) -> None:
    assert why in _message(env)


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENSYN_KEYSTORE", "GENSYN_PASSPHRASE", "GENSYN_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENSYN_PRIVATE_KEY", "0x" + KEY)
    assert account_from_env().address == ADDRESS
