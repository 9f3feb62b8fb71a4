"""The Gensyn panel in Jupyter Notebook 7: the same extension, without JupyterLab's shell.

``jupyter notebook`` (Notebook 7) with this checkout's build and the app
exposed as ``window.jupyterapp`` (``--expose-app-in-browser``), on the
session devnet. On a notebook's page the ``gensyn:open-panel`` command opens
the panel in the left sidebar with all its sections. A ``%%gensyn_train`` cell
run there (as dev account 0, whose tasks the devnet's signer approves) shows
up in the panel's Tasks through the live stream, named by its notebook and
cell, and "Open cell" selects that cell again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .._devnet import Devnet
from .conftest import ARTIFACTS, BUILT_LABEXTENSION, Lab, _running_lab

NOTEBOOK = "nb7-panel.ipynb"
CELLS = {
    "setup": (
        "%load_ext gensyn_jupyter\n"
        "import torch\n"
        "model = torch.nn.Linear(4, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)"
    ),
    "train": (
        "%%gensyn_train -o nb7_run\n"
        "for step in range(20):\n"
        "    loss = model(torch.ones(8, 4)).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
    ),
}
SECTIONS = [
    "gensyn-live",
    "gensyn-network",
    "gensyn-wallet-address",
    "gensyn-approvals",
    "gensyn-budget-save",
    "gensyn-tasks",
    "gensyn-providers",
    "gensyn-panel-message",
]


def _notebook() -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": cell_id,
                "metadata": {},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
            for cell_id, source in CELLS.items()
        ],
    }


@pytest.fixture(scope="module")
def notebook7(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Notebook 7 with this checkout's build, found first on ``$JUPYTER_PATH``.

    (Notebook 7.6 lists an ``extra_labextensions_path`` extension in the page
    but does not serve its files: the page gets 404s and runs without it.)
    """
    root = tmp_path_factory.mktemp("nb7-root")
    data = tmp_path_factory.mktemp("nb7-jupyter-path")
    if (BUILT_LABEXTENSION / "package.json").is_file():
        (data / "labextensions").mkdir()
        (data / "labextensions" / "gensyn-jupyter").symlink_to(BUILT_LABEXTENSION)
    extra = [
        "--expose-app-in-browser",
    ]
    env = pytest.MonkeyPatch()
    env.setenv(
        "JUPYTER_PATH", str(data), prepend=os.pathsep if os.environ.get("JUPYTER_PATH") else None
    )
    try:
        with _running_lab(root, devnet, extra, app="notebook") as (url, token):
            env.undo()  # the server has it; nothing else of this session should
            yield Lab(url=url, token=token, root=root)
    finally:
        env.undo()


@pytest.fixture
def page(notebook7: Lab, browser: Any) -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        yield page
    finally:
        page.close()


def _tid(name: str) -> str:
    return f"[data-testid='{name}']"


def _app_ready(page: Any) -> None:
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands.hasCommand('gensyn:open-panel')",
        timeout=90_000,
    )


def _kernel_idle(page: Any) -> None:
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session"
        "   && w.sessionContext.session.kernel;"
        " return !!k && k.status === 'idle'; }",
        timeout=90_000,
    )


def _active_cell(page: Any) -> int:
    return int(page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"))


@pytest.mark.timeout(300)
def test_the_panel_opens_in_notebook_7_and_opens_the_cell_of_a_task(
    notebook7: Lab, devnet: Devnet, page: Any
) -> None:
    (notebook7.root / NOTEBOOK).write_text(json.dumps(_notebook()))
    page.goto(f"{notebook7.url}notebooks/{NOTEBOOK}?token={notebook7.token}")
    _app_ready(page)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)

    # After the layout is restored (it would show the restored sidebar tab again).
    page.evaluate(
        "async () => { await window.jupyterapp.restored;"
        " await window.jupyterapp.commands.execute('gensyn:open-panel'); }"
    )
    panel = page.locator("#gensyn-panel")
    expect(panel).to_be_visible(timeout=15_000)
    for testid in SECTIONS:
        expect(panel.locator(_tid(testid)).first).to_be_attached()
    expect(panel.locator(_tid("gensyn-network"))).to_contain_text(devnet.url, timeout=15_000)
    # The relay's stream is open (the page's cookie authenticates the EventSource).
    expect(panel.locator(_tid("gensyn-live"))).to_have_attribute(
        "data-mode", "live", timeout=20_000
    )
    expect(panel.locator(_tid("gensyn-live"))).to_have_text("live updates")

    _kernel_idle(page)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    row = panel.locator(f"{_tid('gensyn-tasks')} {_tid('gensyn-task')}").filter(
        has_text="from nb7-panel.ipynb"
    )
    # Live: the task shows without waiting for the 30 s safety poll.
    expect(row).to_have_count(1, timeout=25_000)
    expect(row.locator(_tid("gensyn-task-origin"))).to_have_text(
        "from nb7-panel.ipynb · cell train"
    )
    task_id = row.get_attribute("data-task-id")
    assert task_id
    expect(row).to_have_attribute("data-state", "settled", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "notebook7-panel.png"))

    # Select the first cell, then "Open cell" goes back to the training cell.
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
    assert _active_cell(page) == 0
    open_button = row.locator(_tid("gensyn-task-open"))
    expect(open_button).to_be_visible()
    expect(open_button).to_have_text("Open cell")
    open_button.click()
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(message).to_have_text(f"opened {NOTEBOOK} at cell 2", timeout=15_000)
    assert _active_cell(page) == 1
