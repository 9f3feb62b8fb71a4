from __future__ import annotations

from gensyn_jupyter.kernel import GensynError, RemoteTaskError
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
