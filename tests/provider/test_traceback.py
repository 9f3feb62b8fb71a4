from __future__ import annotations

from gensyn_jupyter.provider._traceback import CELL_FILENAME, remote_error


def _run(source: str, ns: dict[str, object]) -> BaseException:
    try:
        exec(compile(source, CELL_FILENAME, "exec"), ns)
    except BaseException as exc:
        return exc
    raise AssertionError("the cell did not raise")


def test_frames_point_at_cell_lines_shifted_by_the_magic_line() -> None:
    source = "x = 1\ny = 2\nz = x / (y - 2)\n"
    err = remote_error(_run(source, {}), source=source, line_offset=1)
    assert err.type == "ZeroDivisionError"
    assert err.cell_line == 4  # line 3 of the body is line 4 of the notebook cell
    assert err.frames[-1].line == "z = x / (y - 2)"
    assert all(f.in_cell for f in err.frames)


def test_frames_inside_called_functions_are_kept() -> None:
    def helper() -> None:
        raise ValueError("bad batch")

    source = "a = 0\nhelper()\n"
    err = remote_error(_run(source, {"helper": helper}), source=source, line_offset=1)
    assert err.cell_line == 3
    assert err.frames[-1].name == "helper" and not err.frames[-1].in_cell
    assert err.message == "bad batch"
