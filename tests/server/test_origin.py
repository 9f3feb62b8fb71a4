"""Where a task came from, as the panel shows it: notebook, openable path, cell, bundle size."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import pytest

from gensyn_jupyter.config import read_session_token
from gensyn_jupyter.server._origin import contents_path, size_text

from .server_helpers import Api, Coordinator, PaidNetwork, _bundle, key_of

PASS = "correct horse battery"


def test_contents_path_is_below_the_root_or_none(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert contents_path(str(root / "sub" / "nb.ipynb"), str(root)) == "sub/nb.ipynb"
    assert contents_path(str(root / "nb.ipynb"), str(root) + "/") == "nb.ipynb"
    assert contents_path(str(tmp_path / "elsewhere.ipynb"), str(root)) is None
    assert contents_path(str(root / "sub" / ".." / ".." / "x.ipynb"), str(root)) is None
    assert contents_path("sub/nb.ipynb", str(root)) == "sub/nb.ipynb"  # already relative
    assert contents_path("../nb.ipynb", str(root)) is None
    assert contents_path(str(root / "script.py"), str(root)) is None
    assert contents_path("", str(root)) is None
    assert contents_path(str(root / "nb.ipynb"), None) is None


def test_contents_path_expands_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    assert contents_path("~/work/nb.ipynb", str(tmp_path)) == "work/nb.ipynb"
    assert contents_path("~/work/nb.ipynb", str(tmp_path / "work")) == "nb.ipynb"


def test_sizes_read_like_the_kernels() -> None:
    assert [size_text(n) for n in (0, 999, 1000, 1_234_567, 5 * 10**9)] == [
        "0 B",
        "999 B",
        "1.0 KB",
        "1.2 MB",
        "5.0 GB",
    ]


def _bundle_size() -> int:
    return len(_bundle())


def _submit(coordinator: Coordinator, **spec: Any) -> dict[str, Any]:
    """A task of a free network with these spec fields (as a kernel sends them)."""
    data = _bundle()
    sha = hashlib.sha256(data).hexdigest()
    assert coordinator.http.put(f"/v1/blobs/{sha}", content=data).status_code in (200, 201)
    r = coordinator.http.post("/v1/tasks", json={"bundle": sha, **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_tasks_name_their_notebook_and_cell_and_where_it_opens(
    gensyn_api: Api, network: str, coordinator: Coordinator, jp_root_dir: pathlib.Path
) -> None:
    inside = str(jp_root_dir / "course" / "week1.ipynb")
    outside = "/somewhere/else/theirs.ipynb"
    mine = _submit(coordinator, notebook=inside, cell_id="c1", bundle_bytes=1)
    theirs = _submit(coordinator, notebook=outside, cell_id="c9")
    plain = coordinator.submit()

    status, tasks = await gensyn_api("tasks")
    assert status == 200
    by_id = {t["id"]: t for t in tasks}
    assert by_id[mine["id"]]["notebook_path"] == "course/week1.ipynb"
    assert by_id[mine["id"]]["spec"]["notebook"] == inside
    assert by_id[mine["id"]]["spec"]["cell_id"] == "c1"
    # The coordinator stores the size it measured, not the one claimed.
    assert by_id[mine["id"]]["spec"]["bundle_bytes"] == _bundle_size()
    assert by_id[theirs["id"]]["notebook_path"] is None
    assert by_id[plain]["notebook_path"] is None and by_id[plain]["spec"]["notebook"] == ""

    status, one = await gensyn_api("tasks", mine["id"])
    assert status == 200 and one["notebook_path"] == "course/week1.ipynb"


async def test_an_approval_shows_the_bundle_size_and_the_cell_it_came_from(
    gensyn_api: Api,
    paid_network: PaidNetwork,
    paid_coordinator: Coordinator,
    jp_root_dir: pathlib.Path,
) -> None:
    user = paid_network.chain.accounts[0]
    status, body = await gensyn_api(
        "wallet", "import", method="POST", body={"private_key": key_of(user), "passphrase": PASS}
    )
    assert status == 201, body
    status, state = await gensyn_api(
        "wallet", "unlock", method="POST", body={"address": body["address"], "passphrase": PASS}
    )
    assert status == 200 and state["session"], state
    token = read_session_token(paid_network.url)
    assert token is not None
    notebook = str(jp_root_dir / "mnist.ipynb")
    task = paid_coordinator.submit_as(token, notebook=notebook, cell_id="c-train", label="mnist")

    status, waiting = await gensyn_api("approvals")
    assert status == 200, waiting
    (item,) = [w for w in waiting if w["task_id"] == task["id"]]
    expected: dict[str, Any] = {
        "bundle_bytes": _bundle_size(),
        "bundle_size": f"{_bundle_size()} B",
        "notebook": notebook,
        "notebook_path": "mnist.ipynb",
        "cell_id": "c-train",
    }
    assert {k: item[k] for k in expected} == expected
    json.dumps(item)  # all plain JSON
