"""The live monitor in a real JupyterLab: a chart while the cell runs, Cancel while it is busy."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from .._devnet import Devnet
from .conftest import ARTIFACTS, Lab

CELLS = [
    "%load_ext gensyn_jupyter\n"
    "import torch\n"
    "w = torch.zeros(4, requires_grad=True)\n"
    "xs = torch.ones(4)\n"
    "opt = torch.optim.SGD([w], lr=0.001)",
    "%%gensyn_train -o ui_run\n"
    "import time\n"
    "for step in range(100000):\n"
    "    loss = ((w * xs).sum() - 3.0) ** 2\n"
    "    opt.zero_grad(); loss.backward(); opt.step()\n"
    "    time.sleep(0.005)\n",
]

PAINTED_PIXELS = """
(el) => {
  const canvas = el.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
  return painted;
}
"""


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
                "id": f"c{i}",
                "metadata": {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(CELLS)
        ],
    }


def _run_cell(page: Any, index: int, *, wait_done: bool) -> None:
    """Select cell ``index`` and run it (Shift+Enter), retrying once if the key was lost."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(3):
        prompt.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "([i, done]) => {"
                " const p = document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
                "   .querySelector('.jp-InputPrompt').innerText;"
                " return done ? /\\[\\d+\\]/.test(p) : /\\[(\\*|\\d+)\\]/.test(p); }",
                arg=[index, wait_done],
                timeout=30_000,
            )
            return
        except Exception:  # the key press was lost (focus): select the cell again
            continue
    raise AssertionError(f"cell {index} did not run: {prompt.inner_text()!r}")


def _running_task(devnet: Devnet) -> dict[str, Any] | None:
    listed = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 5}, headers=devnet.auth())
    tasks = listed.json()
    running = [t for t in tasks if t["state"] in ("queued", "running")]
    return running[0] if running else None


@pytest.mark.timeout(300)
def test_chart_draws_live_and_cancel_works_while_the_kernel_is_busy(
    lab: Lab, devnet: Devnet, browser: Any
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (lab.root / "monitor.ipynb").write_text(json.dumps(_notebook()))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(lab.page_url("monitor.ipynb"))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
        )
        _run_cell(page, 0, wait_done=True)
        _run_cell(page, 1, wait_done=False)

        chart = page.locator("[data-testid='gensyn-chart']")
        chart.wait_for(state="visible", timeout=120_000)
        deadline = time.monotonic() + 60
        painted = 0
        while time.monotonic() < deadline and painted < 200:
            painted = chart.evaluate(PAINTED_PIXELS)
            time.sleep(0.25)
        page.screenshot(path=str(ARTIFACTS / "monitor-running.png"))
        assert painted >= 200, "the chart drew nothing while the cell ran"

        task = _running_task(devnet)
        assert task is not None and task["state"] == "running"
        prompt = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
        assert "[*]" in prompt.inner_text(), "the kernel should be busy in the cell"

        page.locator("[data-testid='gensyn-cancel']").click()
        deadline = time.monotonic() + 15
        state = task["state"]
        while time.monotonic() < deadline and state != "cancelled":
            reply = httpx.get(f"{devnet.url}/v1/tasks/{task['id']}", headers=devnet.auth())
            state = reply.json()["state"]
            time.sleep(0.2)
        assert state == "cancelled"
        message = page.locator("[data-testid='gensyn-message']")
        message.wait_for(state="visible", timeout=10_000)
        assert "cancel" in message.inner_text().lower()
        page.wait_for_function(
            "() => !document.querySelectorAll('.jp-Notebook .jp-Cell')[1]"
            ".querySelector('.jp-InputPrompt').innerText.includes('[*]')",
            timeout=30_000,
        )
        page.screenshot(path=str(ARTIFACTS / "monitor-cancelled.png"))
    finally:
        page.screenshot(path=str(ARTIFACTS / "monitor-last.png"))
        page.close()
