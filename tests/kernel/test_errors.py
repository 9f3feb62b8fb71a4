from __future__ import annotations

from gensyn_jupyter.kernel import GensynError, RemoteTaskError, TrainResult
from gensyn_jupyter.protocol import RemoteError


def test_remote_traceback_names_cell_lines() -> None:
    error = RemoteError.model_validate(
        {
            "type": "ZeroDivisionError",
            "message": "division by zero",
            "cell_line": 4,
            "frames": [
                {
                    "filename": "<gensyn-cell>",
                    "lineno": 4,
                    "name": "<module>",
                    "line": "z = 1 / 0",
                    "in_cell": True,
                }
            ],
        }
    )
    exc = RemoteTaskError(task_id="t-1", provider="devnet-1", error=error)
    lines = exc._render_traceback_()
    assert "  Cell line 4, in <cell>" in lines
    assert "    z = 1 / 0" in lines
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "devnet-1" in str(exc)


def test_gensyn_error_renders_as_one_line() -> None:
    assert GensynError("nothing was sent")._render_traceback_() == ["GensynError: nothing was sent"]


def test_handle_summarises_the_run() -> None:
    handle = TrainResult(
        task_id="t-1",
        network="http://x",
        status="settled",
        provider="p",
        history=[
            {"step": 1, "name": "loss", "value": 2.0},
            {"step": 2, "name": "loss", "value": 0.5},
        ],
        duration=1.5,
        steps=2,
    )
    assert handle.losses == [2.0, 0.5]
    assert repr(handle) == "<gensyn task t-1: settled, on p, 2 steps, 1.50 s, loss 2 → 0.5>"
