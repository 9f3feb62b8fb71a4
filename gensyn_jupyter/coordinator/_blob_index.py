"""Who may read a blob: its uploaders, and the tasks that use it (the blob -> task index).

A blob is served (``GET`` and ``HEAD /v1/blobs/{sha256}``) to a caller when

- the caller uploaded it (``blob_uploaders``: a session's account, a
  provider, or ``anonymous`` for an upload without credentials, which is
  therefore public, as everything on a free network is);
- a task that uses it (``task_blobs``) has no owner (a free network: such a
  task is readable by anyone, so are its blobs), or is the caller's
  account's own;
- the caller is a provider that holds or held a lease on such a task (every
  blob of it: bundle, inputs, the checkpoint to resume from, its results);
- the caller is a provider given a verification job (spot, replica, referee)
  on such a task: its bundle and inputs, and the checkpoint named in the job
  (not the task's other checkpoints nor its results).

The index is filled where a blob becomes part of a task: at submission (the
bundle and its inputs, by ``_tasks.create_task``) and, by the flush hook
:func:`index_on_flush`, whenever a task's result manifest or resume
checkpoint is stored or a replica posts its result. A provider can only
attach blobs it may read itself, so naming someone else's blob in a result
grants nobody access to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    false,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from ._db import BlobUploaderRow, LeaseRow, TaskBlobRow, TaskRow, VerifyJobRow

__all__ = [
    "ANONYMOUS",
    "Caller",
    "backfill",
    "index_blobs",
    "index_on_flush",
    "readable",
    "readable_among",
    "record_upload",
]

_log = logging.getLogger("gensyn_jupyter.coordinator")

ANONYMOUS = "anonymous"
_CHUNK = 500  # names per IN (...) list


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a signed-in account, a provider, or nobody known."""

    account: str | None = None
    provider_id: str | None = None

    @property
    def principal(self) -> str:
        """How ``blob_uploaders`` names this caller."""
        if self.account is not None:
            return f"account:{self.account.lower()}"
        if self.provider_id is not None:
            return f"provider:{self.provider_id}"
        return ANONYMOUS


def _chunks(names: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(names), _CHUNK):
        yield names[start : start + _CHUNK]


def readable_among(session: Session, shas: Iterable[str], caller: Caller) -> set[str]:
    """The blobs among ``shas`` that ``caller`` may read (see the module's rules)."""
    wanted = sorted(set(shas))
    principals = {ANONYMOUS, caller.principal}
    owner: ColumnElement[bool] = TaskRow.account.is_(None)
    if caller.account is not None:
        owner = or_(owner, func.lower(TaskRow.account) == caller.account.lower())
    leased: ColumnElement[bool] = false()
    job: ColumnElement[bool] = false()
    pid = caller.provider_id
    if pid is not None:
        leased = TaskBlobRow.task_id.in_(
            select(LeaseRow.task_id).where(LeaseRow.provider_id == pid)
        )
        job = and_(
            TaskBlobRow.role.in_(("bundle", "input")),
            TaskBlobRow.task_id.in_(
                select(VerifyJobRow.task_id).where(VerifyJobRow.provider_id == pid)
            ),
        )
    found: set[str] = set()
    for part in _chunks(wanted):
        found.update(
            session.scalars(
                select(BlobUploaderRow.sha256).where(
                    BlobUploaderRow.sha256.in_(part), BlobUploaderRow.principal.in_(principals)
                )
            )
        )
        rest = [s for s in part if s not in found]
        if not rest:
            continue
        found.update(
            session.scalars(
                select(TaskBlobRow.sha256)
                .join(TaskRow, TaskRow.id == TaskBlobRow.task_id)
                .where(TaskBlobRow.sha256.in_(rest), or_(owner, leased, job))
                .distinct()
            )
        )
        rest = [s for s in rest if s not in found]
        if pid is not None and rest:
            found.update(_job_checkpoints(session, pid, rest))
    return found


def _job_checkpoints(session: Session, provider_id: str, shas: list[str]) -> set[str]:
    """Those of ``shas`` named as the checkpoint of a job given to ``provider_id``."""
    tasks = select(TaskBlobRow.task_id).where(TaskBlobRow.sha256.in_(shas))
    jobs = session.scalars(
        select(VerifyJobRow.job).where(
            VerifyJobRow.provider_id == provider_id, VerifyJobRow.task_id.in_(tasks)
        )
    )
    named: set[str | None] = set()
    for raw in jobs:
        checkpoint = json.loads(raw).get("checkpoint") or {}
        named.update(checkpoint.get(k) for k in ("meta", "tensors"))
    return {s for s in shas if s in named}


def readable(session: Session, sha: str, caller: Caller) -> bool:
    """Whether ``caller`` may read blob ``sha``."""
    return sha in readable_among(session, [sha], caller)


def record_upload(session: Session, sha: str, caller: Caller, now: float) -> None:
    """Remember that ``caller`` uploaded (and so holds) the bytes of ``sha``."""
    principal = caller.principal
    if session.get(BlobUploaderRow, (sha, principal)) is None:
        session.add(BlobUploaderRow(sha256=sha, principal=principal, created_at=now))


def index_blobs(session: Session, task_id: str, shas: Iterable[str], role: str) -> None:
    """Record that task ``task_id`` uses ``shas`` (those already recorded are skipped)."""
    wanted = sorted(set(shas))
    if not wanted:
        return
    with session.no_autoflush:
        have: set[str] = set()
        for part in _chunks(wanted):
            have.update(
                session.scalars(
                    select(TaskBlobRow.sha256).where(
                        TaskBlobRow.task_id == task_id, TaskBlobRow.sha256.in_(part)
                    )
                )
            )
        pending = {(o.task_id, o.sha256) for o in session.new if isinstance(o, TaskBlobRow)}
        for sha in wanted:
            if sha not in have and (task_id, sha) not in pending:
                session.add(TaskBlobRow(task_id=task_id, sha256=sha, role=role))


def _manifest_shas(raw: str | None) -> set[str]:
    """The blobs a stored ``ResultManifest`` JSON names (results and checkpoints)."""
    if not raw:
        return set()
    data: dict[str, Any] = json.loads(raw)
    shas = {data[k] for k in ("values", "tensors") if data.get(k)}
    return shas | _checkpoint_shas(data.get("checkpoints") or [])


def _checkpoint_shas(blobs: list[dict[str, Any]]) -> set[str]:
    return {b[k] for b in blobs for k in ("meta", "tensors") if b.get(k)}


def _resume_shas(raw: str | None) -> set[str]:
    """The blobs a stored ``CheckpointPost`` JSON names."""
    return _checkpoint_shas(json.loads(raw).get("blobs") or []) if raw else set()


def _changed(obj: Any, attr: str, new: bool) -> bool:
    return new or bool(inspect(obj).attrs[attr].history.has_changes())


def _attach(session: Session, task_id: str, shas: set[str], role: str, by: str | None) -> None:
    """Index ``shas`` for the task, only those the provider ``by`` may read itself."""
    if not shas:
        return
    allowed = readable_among(session, shas, Caller(provider_id=by)) if by else set()
    refused = shas - allowed
    if refused:
        _log.warning(
            "task %s: provider %s named %d blob(s) it never uploaded nor was given (%s); "
            "they are not attached to the task",
            task_id,
            by,
            len(refused),
            ", ".join(sorted(refused)[:3]),
        )
    index_blobs(session, task_id, allowed, role)


def index_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    """``before_flush`` hook: index the blobs of results, resume points and replicas.

    Runs wherever a task's ``result`` or ``checkpoint`` or a replica job's
    ``verdict`` changes, so every code path that stores them is covered.
    """
    new = set(session.new)
    with session.no_autoflush:
        for obj in list(new) + list(session.dirty):
            is_new = obj in new
            if isinstance(obj, TaskRow):
                if obj.result and _changed(obj, "result", is_new):
                    _attach(session, obj.id, _manifest_shas(obj.result), "result", obj.provider_id)
                if obj.checkpoint and _changed(obj, "checkpoint", is_new):
                    shas = _resume_shas(obj.checkpoint)
                    _attach(session, obj.id, shas, "checkpoint", obj.provider_id)
            elif (
                isinstance(obj, VerifyJobRow)
                and obj.kind == "replica"
                and obj.verdict
                and _changed(obj, "verdict", is_new)
            ):
                shas = _manifest_shas(obj.verdict)
                _attach(session, obj.task_id, shas, "replica", obj.provider_id)


def backfill(conn: Connection) -> int:
    """Index the blobs of tasks stored before the index existed; how many tasks it indexed.

    Their bundle, result and checkpoint blobs are read from the stored JSON.
    Input blobs are named inside the bundle (a file in the blob store, not in
    the database), so an older task's inputs are indexed only when it is
    submitted again.
    """
    rows = conn.execute(
        text(
            "SELECT id, spec, result, checkpoint FROM tasks "
            "WHERE id NOT IN (SELECT task_id FROM task_blobs)"
        )
    ).all()
    if not rows:
        return 0
    for task_id, spec, result, checkpoint in rows:
        found: dict[str, str] = {}
        for role, shas in (
            ("checkpoint", _resume_shas(checkpoint)),
            ("result", _manifest_shas(result)),
            ("bundle", {json.loads(spec)["bundle"]}),
        ):
            found.update(dict.fromkeys(shas, role))
        conn.execute(
            insert(TaskBlobRow),
            [{"task_id": task_id, "sha256": s, "role": r} for s, r in found.items()],
        )
    _log.info("indexed the blobs of %d task(s) stored before the blob index", len(rows))
    return len(rows)
