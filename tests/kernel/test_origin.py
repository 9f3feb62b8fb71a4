"""The notebook and cell a ``%%gensyn_train`` cell comes from, as its kernel tells them."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import KernelManager

from gensyn_jupyter.kernel._origin import cell_origin


class _Kernel:
    def __init__(self, parent: Any) -> None:
        self._parent = parent

    def get_parent(self) -> Any:
        return self._parent


class _Shell:
    def __init__(self, parent: Any) -> None:
        self.kernel = _Kernel(parent)


def test_the_notebook_path_keeps_the_home_as_tilde(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path.home()
    monkeypatch.setenv("JPY_SESSION_NAME", str(home / "work" / "mnist.ipynb"))
    assert cell_origin(_Shell({}))[0] == "~/work/mnist.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", "/srv/shared/class.ipynb")
    assert cell_origin(_Shell({}))[0] == "/srv/shared/class.ipynb"


@pytest.mark.parametrize("value", ["", "console-1", "/tmp/x.py", "/" + "a" * 1100 + ".ipynb"])
def test_no_notebook_when_the_session_is_not_one(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", value)
    assert cell_origin(_Shell({}))[0] == ""


def test_no_session_name_no_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert cell_origin(None) == ("", "")  # plain Python: no IPython shell either


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        (
            {"metadata": {"cellId": "c1f0e7aa-93b2-4a2b-9c55-1d2b9d0b11aa"}},
            "c1f0e7aa-93b2-4a2b-9c55-1d2b9d0b11aa",
        ),
        ({"metadata": {}}, ""),
        ({}, ""),
        ({"metadata": {"cellId": "not an id!"}}, ""),
        ({"metadata": {"cellId": "x" * 65}}, ""),
        ({"metadata": {"cellId": 7}}, ""),
        (None, ""),
    ],
)
def test_the_cell_id_comes_from_the_execute_requests_metadata(parent: Any, expected: str) -> None:
    assert cell_origin(_Shell(parent))[1] == expected


def test_a_real_kernel_sees_the_cell_id_and_notebook_jupyter_sends(tmp_path: Path) -> None:
    notebook = tmp_path / "origin.ipynb"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(
        env={**os.environ, "JPY_SESSION_NAME": str(notebook)},
        extra_arguments=[],
        cwd=str(tmp_path),
    )
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        code = (
            "from gensyn_jupyter.kernel._origin import cell_origin\n"
            "print('ORIGIN', *cell_origin(), sep='|')"
        )
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        }
        msg = kc.session.msg("execute_request", content, metadata={"cellId": "c0"})
        kc.shell_channel.send(msg)
        out = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                reply = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if reply["msg_type"] == "stream":
                out += reply["content"]["text"]
            if reply["msg_type"] == "error":
                raise AssertionError("\n".join(reply["content"]["traceback"]))
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                break
        expected = str(notebook)
        home = str(Path.home()).rstrip(os.sep) + os.sep
        if expected.startswith(home):
            expected = "~/" + expected[len(home) :]
        assert f"ORIGIN|{expected}|c0" in out, out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
