"""``gensyn wallet``: keys made and imported from a terminal, never on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eth_account import Account

GENSYN = [sys.executable, "-m", "gensyn_jupyter"]


def _wallet(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GENSYN, "wallet", *args, "--keystore-dir", str(tmp_path / "ks")],
        input=stdin,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_create_list_and_import_keep_keys_encrypted(tmp_path: Path) -> None:
    empty = _wallet(tmp_path, "list")
    assert empty.returncode == 0 and "no keys in" in empty.stdout

    made = _wallet(tmp_path, "create", GENSYN_PASSPHRASE="correct horse battery")
    assert made.returncode == 0, made.stderr
    created = made.stdout.split()[0]

    key = Account.create()
    secret = "0x" + bytes(key.key).hex()
    # the key comes on stdin (as from a pipe), the passphrase from the environment
    imported = _wallet(tmp_path, "import", stdin=secret + "\n", GENSYN_PASSPHRASE="another one!")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(key.address)
    assert secret[2:] not in imported.stdout + imported.stderr

    listed = _wallet(tmp_path, "list").stdout.split()
    assert sorted(listed) == sorted([created, key.address])
    files = list((tmp_path / "ks").iterdir())
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert secret[2:] not in text
        assert json.loads(text)["crypto"]["kdf"] == "scrypt"
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_short_passphrase_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    refused = _wallet(tmp_path, "create", GENSYN_PASSPHRASE="short")
    assert refused.returncode == 1
    assert "at least 8 characters" in refused.stderr
    assert _wallet(tmp_path, "list").stdout.startswith("no keys in")
