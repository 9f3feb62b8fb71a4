"""The classroom notebook, run for real: a JupyterHub with the class service on the devnet.

The notebook starts a real JupyterHub (the documented example config, the
proxy, the class service as a managed service) on the session's devnet,
funds two students from the faucet, runs a student's cell within budget and
one over it through the Hub, and reads the class view as the instructor.
This test checks what a reader of the notebook sees in its outputs.

``GENSYN_SAVE_NOTEBOOK=1`` writes the executed notebook back to
``notebooks/classroom.ipynb`` once it passed (outputs kept, so GitHub shows
them; the widgets' state dropped, GitHub cannot show it): how the saved
outputs were made.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .._devnet import Devnet
from .._notebooks import cell_text, code_cell
from .test_jupyterhub import _require_tools

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "classroom.ipynb"

pytestmark = pytest.mark.timeout(300)


def _stop_hubs(home: Path) -> None:
    """A Hub the notebook left running (it died half way): by its pid file."""
    for pid_file in home.glob("hub-*/jupyterhub.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if b"jupyterhub" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)


def _hub_logs(home: Path) -> str:
    return "\n".join(
        f"--- {log}\n{log.read_text(errors='replace')[-4000:]}"
        for log in home.glob("hub-*/hub.log")
    )


def test_the_classroom_notebook_funds_students_refuses_over_budget_and_shows_the_class(
    devnet: Devnet,
) -> None:
    _require_tools()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENSYN_", "JUPYTERHUB_"))}
    env["GENSYN_HOME"] = str(devnet.home)  # the notebook uses the running devnet there
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=180,  # seconds per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"the notebook failed: {exc}\n{_hub_logs(devnet.home)}")
    finally:
        _stop_hubs(devnet.home)

    budgets = cell_text(code_cell(nb, "import sys"))
    assert "c.GensynClass.budget_overrides = {'bob': 500000000000000}" in budgets, budgets

    funded = cell_text(code_cell(nb, "for student in room.students"))
    accounts = dict(re.findall(r"^(\w+)\s+(0x[0-9a-fA-F]{40})\s+balance", funded, re.M))
    assert set(accounts) == {"alice", "bob"}, funded
    assert re.search(r"^bob .* budget 0\.0005 ETH$", funded, re.M), funded
    assert " balance     0 ETH" not in funded and "balance    10" in funded, funded

    alice = cell_text(code_cell(nb, "%%gensyn_train --verify spot"))
    assert (
        f"awaiting approval by the class service: at most 0.00012 ETH from your class account "
        f"{accounts['alice']}, within the budget your instructor set"
    ) in alice, alice
    assert "every leaf reproduced bit for bit" in alice and "settled: provider paid" in alice

    refused_cell = code_cell(nb, "%%gensyn_train -o big")
    errors = [o for o in refused_cell.outputs if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["GensynError"], cell_text(refused_cell)
    refused = cell_text(refused_cell)
    assert "over your class budget" in refused and "your budget of 0.0005 ETH" in refused
    assert "nothing was paid" in refused, refused
    refused_id = re.search(r"Task (t-[0-9a-f]+) was cancelled", refused)
    assert refused_id, refused

    view = cell_text(code_cell(nb, "view = room.class_view()"))
    assert "0 ETH held in escrow" in view, view
    rows = {
        m.group(1): m.groups()
        for m in re.finditer(r"^(t-[0-9a-f]+)\s+(\w+)\s+(\w+)\s+(\S+)\s+(\w+)\s+(\w+)", view, re.M)
    }
    assert rows[refused_id.group(1)][1:] == ("bob", "cancelled", "-", "none", "none"), view
    states = {(r[1], r[2], r[4], r[5]) for r in rows.values()}
    assert ("alice", "settled", "spot", "verified") in states, view
    assert ("bob", "settled", "none", "trusted") in states, view
    assert re.search(r"^bob\s+0x\w{4}…\w{4}\s+0\.0005 ETH", view, re.M), view

    denied = cell_text(code_cell(nb, 'denied = room.service("GET", "api/class"'))
    assert denied.startswith("403 alice is not an instructor of this class"), denied
    assert "stopped" in cell_text(nb.cells[-1])
    if os.environ.get("GENSYN_SAVE_NOTEBOOK") == "1":
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, NOTEBOOK)
