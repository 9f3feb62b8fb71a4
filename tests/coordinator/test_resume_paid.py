"""Which lost runs are not resumed, and what their failure says (no chain needed)."""

from __future__ import annotations

from typing import cast

from sqlalchemy.orm import Session

from gensyn_jupyter.coordinator._db import TaskRow
from gensyn_jupyter.coordinator._leases import _why_not_resumed
from gensyn_jupyter.coordinator._resume import MAX_HANDOVERS, lost_run
from gensyn_jupyter.protocol import Handover, Payment, TaskOrder

ADDRESS = "0x" + "11" * 20

_NO_SESSION = cast(Session, None)  # lost_run touches the session only when it resumes


def _task(**columns: object) -> TaskRow:
    return TaskRow(id="t-0000000001", state="running", checkpoint='{"step": 5}', **columns)


def _payment(handovers: int) -> str:
    order = TaskOrder(
        task_id="t-0000000001", spec_hash="0" * 64, max_price_wei=10**15, verifier_fee_wei=0,
        deadline=2**40, nonce=1, chain_id=31337, contract=ADDRESS, submitter=ADDRESS,
    )  # fmt: skip
    lost = Handover(provider_address=ADDRESS, step=5, amount_wei=1)
    return Payment(
        order=order,
        task_key="0x" + "22" * 32,
        rate_wei_per_gpu_second=1,
        handovers=[lost] * handovers,
    ).model_dump_json()


def test_a_paid_task_handed_over_four_times_is_not_resumed_again_and_says_why() -> None:
    task = _task(payment=_payment(MAX_HANDOVERS))
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert task.state == "running" and task.attempt is None
    assert f"handed over on chain at most {MAX_HANDOVERS} times" in _why_not_resumed(task)


def test_a_replicated_task_is_not_resumed() -> None:
    task = _task(verification='{"mode": "replicate"}')
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert "replicated task is not resumed" in _why_not_resumed(task)


def test_a_task_without_a_checkpoint_says_it_had_none() -> None:
    task = _task()
    task.checkpoint = None
    assert lost_run(_NO_SESSION, task, "p", "no heartbeat for 3 s", 0.0) is False
    assert "posted no checkpoint to resume from" in _why_not_resumed(task)
