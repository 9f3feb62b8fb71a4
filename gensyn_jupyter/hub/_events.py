"""A task's event stream as a student reads it: the coordinator's, with one line reworded.

The coordinator tells the owner of a task awaiting approval to sign it in
the Gensyn panel or with ``gensyn approve``. A student has no key to sign
with: the class service approves within the instructor's budget. The relay
rewords that one message and passes every other byte through as it comes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..protocol import TaskState, format_eth

__all__ = ["class_message", "reword_event", "reword_sse"]

_AWAITING = TaskState.AWAITING_APPROVAL.value


def class_message(task: dict[str, Any]) -> str:
    """What a student's task awaiting approval says."""
    payment = task.get("payment") or {}
    order = payment.get("order") or {}
    total = int(order.get("max_price_wei", 0)) + int(order.get("verifier_fee_wei", 0))
    return (
        f"awaiting approval by the class service: at most {format_eth(total)} from your class "
        f"account {order.get('submitter', '')}, within the budget your instructor set"
    )


def reword_event(event: Any, message: str) -> Any:
    """``event`` (a decoded ``Event``) with an awaiting-approval message replaced."""
    if (
        isinstance(event, dict)
        and event.get("kind") == "state"
        and isinstance(event.get("data"), dict)
        and event["data"].get("state") == _AWAITING
    ):
        return {**event, "data": {**event["data"], "message": message}}
    return event


async def reword_sse(lines: AsyncIterator[str], message: str) -> AsyncIterator[bytes]:
    """Relay an SSE stream line by line, rewording the awaiting-approval event's data."""
    async for line in lines:
        if line.startswith("data:") and _AWAITING in line:
            try:
                event = json.loads(line[5:].strip())
            except ValueError:
                yield (line + "\n").encode()
                continue
            line = "data: " + json.dumps(reword_event(event, message), separators=(",", ":"))
        yield (line + "\n").encode()
