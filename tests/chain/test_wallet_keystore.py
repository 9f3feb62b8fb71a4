"""The signer's encrypted keystore: files on disk, passphrases, unlock and lock."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gensyn_jupyter.chain._keystore import (
    DEFAULT_SCRYPT_N,
    Keystore,
    KeystoreError,
    KeystoreLocked,
    WrongPassphrase,
    default_keystore_dir,
)

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address
PASS = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "gensyn" / "keystore"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(directory: Path, clock: FakeClock) -> Keystore:
    return Keystore(directory=directory, scrypt_n=2**10, clock=clock)


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def test_an_imported_key_is_one_private_encrypted_file_named_by_address(
    store: Keystore, directory: Path
) -> None:
    assert store.import_key("0x" + KEY, PASS) == ADDRESS
    path = directory / f"{ADDRESS}.json"
    assert [p.name for p in directory.iterdir()] == [path.name]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    blob = _all_bytes(directory)
    assert KEY.encode() not in blob and KEY.upper().encode() not in blob
    assert bytes.fromhex(KEY) not in blob
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["crypto"]["kdf"] == "scrypt"
    assert data["crypto"]["kdfparams"]["n"] == 2**10
    # A standard Web3 Secret Storage file: any wallet tool decrypts it.
    assert bytes(Account.decrypt(data, PASS)).hex() == KEY


def test_the_default_file_uses_the_standard_scrypt_work_factor(directory: Path) -> None:
    address = Keystore(directory=directory).create(PASS)
    data = json.loads((directory / f"{address}.json").read_text())
    assert data["crypto"]["kdf"] == "scrypt"
    assert data["crypto"]["kdfparams"]["n"] == DEFAULT_SCRYPT_N == 2**18


def test_a_created_key_unlocks_and_signs(store: Keystore) -> None:
    address = store.create(PASS)
    assert store.addresses() == [address]
    assert not store.is_unlocked(address)
    store.unlock(address.lower(), PASS)
    assert store.is_unlocked(address)
    message = encode_defunct(text="hello")
    signature = store.account(address).sign_message(message).signature
    assert Account.recover_message(message, signature=signature) == address


def test_unlock_with_the_wrong_passphrase_names_the_account(store: Keystore) -> None:
    store.import_key(KEY, PASS)
    with pytest.raises(WrongPassphrase) as info:
        store.unlock(ADDRESS, "not the passphrase")
    assert str(info.value) == f"wrong passphrase for {ADDRESS}"
    assert isinstance(info.value, KeystoreError)
    assert not store.is_unlocked(ADDRESS)
    with pytest.raises(KeystoreError, match="must not be empty"):
        store.unlock(ADDRESS, "")


def test_unlocking_an_unknown_address_lists_the_known_ones(store: Keystore) -> None:
    with pytest.raises(KeystoreError, match="is empty: create or import a key first"):
        store.unlock(ADDRESS, PASS)
    other = store.create(PASS)
    store.import_key(KEY, PASS)
    stranger = Account.from_key("0x" + "33" * 32).address
    with pytest.raises(KeystoreError) as info:
        store.unlock(stranger, PASS)
    assert stranger in str(info.value)
    assert f"known: {', '.join(sorted([other, ADDRESS]))}" in str(info.value)
    with pytest.raises(KeystoreError, match="is not an address"):
        store.unlock("alice", PASS)


def test_a_locked_account_says_how_to_unlock_it(store: Keystore) -> None:
    store.import_key(KEY, PASS)
    with pytest.raises(KeystoreLocked) as info:
        store.account(ADDRESS)
    assert str(info.value).startswith(f"{ADDRESS} is locked: unlock it")
    assert "Gensyn panel" in str(info.value)


def test_an_unlock_with_a_time_to_live_locks_itself(store: Keystore, clock: FakeClock) -> None:
    store.import_key(KEY, PASS)
    store.unlock(ADDRESS, PASS, ttl_seconds=60)
    clock.now += 59
    assert store.is_unlocked(ADDRESS)
    assert store.account(ADDRESS).address == ADDRESS
    clock.now += 1
    assert not store.is_unlocked(ADDRESS)
    with pytest.raises(KeystoreLocked):
        store.account(ADDRESS)


def test_lock_forgets_one_account_or_all(store: Keystore) -> None:
    store.import_key(KEY, PASS)
    other = store.create(PASS)
    store.unlock(ADDRESS, PASS)
    store.unlock(other, PASS)
    store.lock(ADDRESS.lower())
    assert not store.is_unlocked(ADDRESS) and store.is_unlocked(other)
    store.unlock(ADDRESS, PASS)
    store.lock()
    assert not store.is_unlocked(ADDRESS) and not store.is_unlocked(other)


def test_importing_an_address_twice_is_refused_and_keeps_the_first_file(
    store: Keystore, directory: Path
) -> None:
    store.import_key(KEY, PASS)
    before = (directory / f"{ADDRESS}.json").read_bytes()
    with pytest.raises(KeystoreError, match=f"{ADDRESS} is already in the keystore"):
        store.import_key("0x" + KEY.upper(), "another passphrase")
    assert (directory / f"{ADDRESS}.json").read_bytes() == before
    assert len(list(directory.iterdir())) == 1


@pytest.mark.parametrize(
    "bad",
    [KEY[:-1], KEY + "00", "0x" + KEY[:-2] + "zz", "", "00" * 32, "ff" * 32],
    ids=["short", "long", "not-hex", "empty", "zero", "above-curve-order"],
)
def test_a_malformed_key_is_refused_without_repeating_it(store: Keystore, bad: str) -> None:
    with pytest.raises(KeystoreError, match="not a private key") as info:
        store.import_key(bad, PASS)
    if bad:
        assert bad not in str(info.value)
    assert store.addresses() == []


@pytest.mark.parametrize(("passphrase", "why"), [("", "must not be empty"), ("short", "8")])
def test_a_weak_new_passphrase_is_refused(store: Keystore, passphrase: str, why: str) -> None:
    with pytest.raises(KeystoreError, match=why):
        store.create(passphrase)
    with pytest.raises(KeystoreError, match=why):
        store.import_key(KEY, passphrase)
    assert store.addresses() == []


def test_the_key_never_shows_in_a_repr_or_an_error(store: Keystore) -> None:
    store.import_key(KEY, PASS)
    store.unlock(ADDRESS, PASS)
    assert KEY not in repr(store) and ADDRESS in repr(store)
    with pytest.raises(WrongPassphrase) as info:
        store.unlock(ADDRESS, "wrong passphrase")
    assert KEY not in str(info.value) and "wrong passphrase" in str(info.value)


def test_a_damaged_file_is_reported_by_name(store: Keystore, directory: Path) -> None:
    store.import_key(KEY, PASS)
    (directory / f"{ADDRESS}.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="is not a readable keystore file"):
        store.unlock(ADDRESS, PASS)


def test_addresses_ignores_other_files(store: Keystore, directory: Path) -> None:
    assert store.addresses() == []
    store.import_key(KEY, PASS)
    (directory / "notes.txt").write_text("hi")
    (directory / ".tmp-123.json").write_text("{}")
    assert store.addresses() == [ADDRESS]


def test_default_keystore_dir_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENSYN_KEYSTORE_DIR", str(tmp_path / "keys"))
    assert default_keystore_dir() == tmp_path / "keys"
    monkeypatch.delenv("GENSYN_KEYSTORE_DIR")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    assert default_keystore_dir() == tmp_path / "jupyter" / "gensyn" / "keystore"


def test_an_existing_open_directory_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    Keystore(directory=directory, scrypt_n=2**10).import_key(KEY, PASS)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_file_with_damaged_parameters_is_reported_not_crashed(
    store: Keystore, directory: Path
) -> None:
    store.import_key(KEY, PASS)
    path = directory / f"{ADDRESS}.json"
    data = json.loads(path.read_text())
    del data["crypto"]["kdfparams"]["salt"]
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="is not a valid keystore file"):
        store.unlock(ADDRESS, PASS)
    data["crypto"]["kdf"] = "argon2id"
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="unsupported key derivation 'argon2id'"):
        store.unlock(ADDRESS, PASS)
