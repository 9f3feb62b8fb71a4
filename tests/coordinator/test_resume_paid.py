"""Which lost runs are not resumed, and what their failure says (no chain needed)."""

from __future__ import annotations

from typing import cast

from sqlalchemy.orm import Session

from gensyn_jupyter.coordinator._db import TaskRow
from gensyn_jupyter.coordinator._leases import _why_not_resumed
from gensyn_jupyter.coordinator._resume import lost_run

_NO_SESSION = cast(Session, None)  # lost_run touches the session only when it resumes


def _task(**columns: object) -> TaskRow:
    return TaskRow(id="t-0000000001", state="running", checkpoint='{"step": 5}', **columns)


def test_a_paid_task_is_not_resumed_and_its_failure_says_why() -> None:
    task = _task(payment='{"task_key": "0x00"}')
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert task.state == "running" and task.attempt is None
    assert "A paid task is not resumed on another provider" in _why_not_resumed(task)


def test_a_replicated_task_is_not_resumed() -> None:
    task = _task(verification='{"mode": "replicate"}')
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert "replicated task is not resumed" in _why_not_resumed(task)


def test_a_task_without_a_checkpoint_says_it_had_none() -> None:
    task = _task()
    task.checkpoint = None
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert "posted no checkpoint to resume from" in _why_not_resumed(task)
