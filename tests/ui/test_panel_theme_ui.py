"""The Gensyn panel in JupyterLab's light and dark themes, and from the keyboard.

A JupyterLab of its own (the app exposed as ``window.jupyterapp`` so the test
can run commands; user settings in a temporary directory, so the theme it
picks never reaches another test's lab). The panel's colours must follow the
theme (they come from ``--jp-*`` variables only) and keep a text contrast of
at least 4.5:1 (WCAG AA) in both; Tab must reach its buttons, with a visible
focus ring. Screenshots of both themes go to ``tests/ui/artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .._devnet import Devnet
from .conftest import ARTIFACTS, BUILT_LABEXTENSION, Lab, _running_lab

LIGHT, DARK = "JupyterLab Light", "JupyterLab Dark"


def _task(task_id: str, state: str, **extra: Any) -> dict[str, Any]:
    spec = {"bundle": "0" * 64, "label": "mnist", "gpus": 1, "notebook": "", "cell_id": ""}
    return {
        "id": task_id,
        "state": state,
        "spec": {**spec, **extra.pop("spec", {})},
        "provider_name": "gpu-box-1",
        "created_at": 1700000000,
        "error": extra.pop("error", None),
        "payment": None,
        "notebook_path": extra.pop("notebook_path", None),
    }


# Every kind of item the panel draws (each task state, an approval with its
# Approve and Reject buttons), rendered by the panel itself on top of what it
# read from the devnet, so both themes are checked on all of them.
SAMPLE = {
    "tasks": [
        _task(
            "t-queued",
            "queued",
            spec={"notebook": "~/course/week1.ipynb", "cell_id": "c1"},
            notebook_path="course/week1.ipynb",
        ),
        _task("t-running", "running"),
        _task("t-waiting", "awaiting_approval"),
        _task("t-settled", "settled"),
        _task("t-failed", "failed", error="ValueError: loss is NaN"),
        _task("t-cancelled", "cancelled"),
    ],
    "approvals": [
        {
            "task_id": "t-waiting",
            "label": "mnist",
            "account": "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1",
            "created_at": 1700000000,
            "total": "0.0036 ETH",
            "total_wei": 3600000000000000,
            "max_price": "0.0036 ETH",
            "verifier_fee": "0 ETH",
            "summary": "task t-waiting: at most 0.0036 ETH for 1 GPU, up to 1800 s",
            "auto_approve": {"allowed": False, "reason": "auto-approve is off"},
            "bundle_size": "1.2 MB",
            "notebook": "~/course/week1.ipynb",
            "notebook_path": "course/week1.ipynb",
            "cell_id": "c1",
        }
    ],
}

SHOW_SAMPLE = """
async (sample) => {
  const panel = Array.from(window.jupyterapp.shell.widgets('left'))
    .find(w => w.id === 'gensyn-panel');
  panel.stopPolling();  // what is drawn now stays while the theme changes
  await panel.refresh();  // a round already on its way ends before the sample is drawn
  panel.refresh = async () => {};  // and nothing reads the server again
  panel.snapshot = {
    ...panel.snapshot,
    tasks: { ok: true, value: sample.tasks },
    approvals: { ok: true, value: sample.approvals },
  };
  panel.render();
}
"""

# For each visible text element of the panel (buttons and inputs included, disabled
# ones left out as WCAG does): its colour composited over the first opaque
# background behind it, and the contrast ratio of the two.
CONTRASTS = """
(panel) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let color = [255, 255, 255, 1];
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const out = [];
  for (const el of panel.querySelectorAll('*')) {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const control = el.matches('button, input, select');
    if (!own && !control) continue;
    if (el.closest('[hidden]') || el.disabled || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({
      what: el.getAttribute('data-testid') || el.className || el.tagName,
      text: (el.textContent || el.value || '').trim().slice(0, 40),
      ratio: (l1 + 0.05) / (l2 + 0.05),
    });
  }
  const panelBg = background(panel);
  return {
    items: out,
    background: getComputedStyle(panel).backgroundColor,
    color: getComputedStyle(panel).color,
    backgroundLuminance: lum(panelBg),
  };
}
"""


@pytest.fixture(scope="module")
def theme_lab(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("theme-lab-root")
    extensions = tmp_path_factory.mktemp("theme-labextensions")
    if (BUILT_LABEXTENSION / "package.json").is_file():
        (extensions / "gensyn-jupyter").symlink_to(BUILT_LABEXTENSION)
    extra = [
        f"--LabApp.extra_labextensions_path={extensions}",
        "--LabApp.expose_app_in_browser=True",
    ]
    with _running_lab(root, devnet, extra) as (url, token):
        yield Lab(url=url, token=token, root=root)


@pytest.fixture
def page(theme_lab: Lab, browser: Any) -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        yield page
    finally:
        page.close()


def _open_panel(page: Any, lab: Lab, devnet: Devnet) -> Any:
    page.goto(f"{lab.url}lab?token={lab.token}&reset")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands.hasCommand('gensyn:open-panel')",
        timeout=90_000,
    )
    # After the layout is restored (it would show the restored sidebar tab again).
    page.evaluate(
        "async () => { await window.jupyterapp.restored;"
        " await window.jupyterapp.commands.execute('gensyn:open-panel'); }"
    )
    panel = page.locator("#gensyn-panel")
    expect(panel).to_be_visible(timeout=10_000)
    network = panel.locator("[data-testid='gensyn-network']")
    expect(network).to_contain_text(devnet.url, timeout=15_000)
    return panel


def _theme(page: Any, name: str) -> None:
    page.evaluate(
        "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", name
    )
    page.wait_for_function(
        "(theme) => document.body.dataset.jpThemeName === theme", arg=name, timeout=30_000
    )
    page.wait_for_timeout(300)  # the theme's stylesheet applied and painted


def _check_contrast(page: Any, panel: Any, theme: str) -> dict[str, Any]:
    """Every text of the panel at 4.5:1 or more, with an error and with a success message."""
    seen: dict[str, Any] = {}
    for kind, text in (("error", "wrong passphrase for 0x90F8…"), ("success", "approved t-1")):
        page.evaluate(
            "([kind, text]) => { const panel = Array.from(window.jupyterapp.shell.widgets('left'))"
            "  .find(w => w.id === 'gensyn-panel'); panel.message.show(text, kind); }",
            [kind, text],
        )
        seen = panel.evaluate(CONTRASTS)
        shown = {str(i["what"]) for i in seen["items"]}
        for must in ("gensyn-approve", "gensyn-reject", "gensyn-task-open", "gensyn-panel-message"):
            assert must in shown, (
                must,
                sorted(shown),
                page.evaluate("() => document.querySelector('#gensyn-panel').innerText"),
            )
        assert len(seen["items"]) >= 30, seen["items"]  # titles, details, buttons, inputs
        low = [i for i in seen["items"] if i["ratio"] < 4.5]
        assert not low, f"{theme}, {kind} message: text under 4.5:1 contrast: {low}"
    return seen


@pytest.mark.timeout(240)
def test_the_panel_follows_the_dark_theme_with_readable_text(
    theme_lab: Lab, devnet: Devnet, page: Any
) -> None:
    panel = _open_panel(page, theme_lab, devnet)
    page.evaluate(SHOW_SAMPLE, SAMPLE)
    expect(panel.locator("[data-testid='gensyn-task']")).to_have_count(len(SAMPLE["tasks"]))
    _theme(page, LIGHT)
    light = _check_contrast(page, panel, LIGHT)
    assert light["backgroundLuminance"] > 0.5
    panel.screenshot(path=str(ARTIFACTS / "panel-theme-light.png"))

    _theme(page, DARK)
    dark = _check_contrast(page, panel, DARK)
    assert dark["backgroundLuminance"] < 0.2
    assert dark["background"] != light["background"]
    assert dark["color"] != light["color"]
    panel.screenshot(path=str(ARTIFACTS / "panel-theme-dark.png"))
    _theme(page, LIGHT)


@pytest.mark.timeout(180)
def test_tab_reaches_the_panels_buttons_with_a_visible_focus_ring(
    theme_lab: Lab, devnet: Devnet, page: Any
) -> None:
    panel = _open_panel(page, theme_lab, devnet)
    panel.locator(".jp-gensyn-title").click()  # the sequential focus starts in the panel
    reached: list[dict[str, Any]] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                """() => {
                  const el = document.activeElement;
                  const style = getComputedStyle(el);
                  return {
                    inPanel: !!el.closest('#gensyn-panel'),
                    tag: el.tagName,
                    testid: el.getAttribute('data-testid'),
                    outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0
                      || style.boxShadow !== 'none',
                  };
                }"""
            )
        )
    buttons = [r for r in reached if r["inPanel"] and r["tag"] == "BUTTON"]
    testids = {r["testid"] for r in buttons}
    assert {"gensyn-create", "gensyn-budget-save"} <= testids, reached
    assert all(r["outline"] for r in buttons), [r for r in buttons if not r["outline"]]
    # Inputs of the panel are reached in between (keyboard users can fill the forms).
    assert any(r["inPanel"] and r["tag"] == "INPUT" for r in reached)
