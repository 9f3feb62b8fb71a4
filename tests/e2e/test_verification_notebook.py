"""The verification notebook, run for real: its own devnet, two provider processes, a kernel.

It runs the scenario of ``test_spot_verification.py`` (an honest run verified,
a ``wrong-data`` cheater challenged and slashed) the way a reader does, and
checks what the reader sees in the cells' outputs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .._notebooks import cell_text, code_cell
from ._window import WindowCloser

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "verification.ipynb"

# Its own devnet: never beside test_spot_verification.py (the same dev keys stake there).
pytestmark = pytest.mark.xdist_group("spot")


def _clean_up(home: Path) -> None:
    """Whatever the notebook left running: its providers (by pid), then its devnet."""
    pids = home / "demo-providers.pids"
    if pids.exists():
        for line in pids.read_text().splitlines():
            pid = int(line.split()[0])
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # gone already
            if b"gensyn_jupyter" in cmdline and b"provider" in cmdline:
                os.kill(pid, signal.SIGKILL)
    subprocess.run(
        [sys.executable, "-m", "gensyn_jupyter", "devnet", "down"],
        env={**os.environ, "GENSYN_HOME": str(home)},
        capture_output=True,
        timeout=60,
        check=False,
    )


def _logs(home: Path) -> str:
    parts = []
    for name in ("honest.log", "cheater.log", "devnet/referee.log", "devnet/devnet.log"):
        path = home / name
        if path.exists():
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


@pytest.mark.timeout(420)
def test_the_verification_notebook_verifies_an_honest_run_and_slashes_a_cheater(
    tmp_path: Path,
) -> None:
    home = tmp_path / "gensyn-home"
    env = {**os.environ, "GENSYN_HOME": str(home)}
    env.pop("GENSYN_NETWORK", None)  # the notebook points its kernel at its own devnet
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=240,  # seconds per cell; the slowest replays, challenges and slashes
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    closer = WindowCloser(home=home)  # a verified run settles without a minute's wait
    closer.start()
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"the notebook failed: {exc}\n{_logs(home)}")
    finally:
        closer.stop()
        _clean_up(home)

    honest = cell_text(code_cell(nb, "%%gensyn_train --verify spot -o honest_run"))
    assert "running on provider honest" in honest, honest
    assert "every leaf reproduced bit for bit" in honest, honest
    table = cell_text(code_cell(nb, "demo.check()  # the background join"))
    assert table.startswith("outcome: verified"), table
    rows = [line.split() for line in table.splitlines() if re.match(r"\s+\d+\s", line)]
    assert rows and all(r[1] == "cheater" and r[3] == "yes" for r in rows), table

    cheated_cell = code_cell(nb, "%%gensyn_train --verify spot -o cheated")
    errors = [o for o in cheated_cell.outputs if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["GensynError"], cell_text(cheated_cell)
    cheated = cell_text(cheated_cell)
    assert "running on provider cheater" in cheated, cheated
    assert "the provider cheater was caught cheating" in cheated, cheated

    evidence = cell_text(code_cell(nb, "demo.check()\nv = cheated.verification"))
    assert "outcome: fraud; task slashed" in evidence, evidence
    assert "TaskChallenged: challenger honest" in evidence, evidence
    assert "FraudProven: cheater cheater, whistleblower honest" in evidence, evidence
    stake = re.search(r"cheater's stake: ([\d.]+) ETH -> ([\d.]+) ETH", evidence)
    assert stake is not None, evidence
    assert float(stake.group(2)) < float(stake.group(1)), evidence
    assert "stopped" in cell_text(nb.cells[-1])
