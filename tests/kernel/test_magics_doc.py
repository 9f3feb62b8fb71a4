"""docs/magics.md says what the magics' own parsers say (it is generated, and cannot drift)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_magics_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_magics_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_reference_names_every_option_of_the_train_magic() -> None:
    from gensyn_jupyter.kernel._magics import GensynMagics

    text = (REPO / "docs" / "magics.md").read_text()
    for action in GensynMagics.gensyn_train.parser._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}`" in text, option
