"""Replayed and forged credentials: sign-in messages, sessions, verdict signatures.

Sign-in runs against a real coordinator on a real anvil (the fixtures of
``test_authorization``). The nonce-reuse and forged-signature cases of the
first sign-in test, and the replayed or reused order nonces, are in
``test_escrow_api``; these add what they leave out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from sqlalchemy import update

from gensyn_jupyter.chain import Devchain, SiweMessage, sign_in, sign_siwe
from gensyn_jupyter.coordinator._db import SessionRow, TaskRow
from gensyn_jupyter.coordinator._errors import ApiError
from gensyn_jupyter.coordinator._verification import _check_signature
from gensyn_jupyter.protocol import Verdict, VerifyJob, verdict_message

from .coordinator_helpers import bundle_bytes, sha
from .test_authorization import anvil, paid  # noqa: F401  (fixtures)
from .test_verification_api import _commitment


def _login(client: TestClient, account: Any, **change: Any) -> Any:
    """Sign in with a message built from a fresh challenge, ``change`` applied to it."""
    challenge = client.post("/v1/auth/nonce").json()
    fields: dict[str, Any] = {
        "domain": challenge["domain"],
        "address": account.address,
        "uri": challenge["uri"],
        "chain_id": challenge["chain_id"],
        "statement": challenge["statement"],
        "nonce": challenge["nonce"],
        **change,
    }
    message = SiweMessage.create(**fields)
    body = {"message": message.to_text(), "signature": sign_siwe(account, message)}
    return client.post("/v1/auth/login", json=body), body


def test_a_sign_in_message_made_for_another_place_or_time_is_refused(
    paid: TestClient,  # noqa: F811
    anvil: Devchain,  # noqa: F811
) -> None:
    user = anvil.accounts[2]
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"domain": "evil.example:443"}, "message is for 'evil.example:443'"),
        ({"chain_id": 1}, "message is for chain 1"),
        ({"issued_at": an_hour_ago, "expires_in": timedelta(minutes=5)}, "message expired at"),
    ]
    for change, words in cases:
        reply, _ = _login(paid, user, **change)
        assert reply.status_code == 401, (change, reply.text)
        assert (
            reply.json()["detail"].startswith("sign-in refused: ")
            and words in reply.json()["detail"]
        ), reply.text


def test_a_sign_in_that_succeeded_cannot_be_replayed(
    paid: TestClient,  # noqa: F811
    anvil: Devchain,  # noqa: F811
) -> None:
    user = anvil.accounts[2]
    first, body = _login(paid, user)
    assert first.status_code == 200, first.text
    replay = paid.post("/v1/auth/login", json=body)
    assert replay.status_code == 401
    assert "nonce unknown, used or expired" in replay.json()["detail"]


def test_an_expired_session_is_refused_and_says_to_sign_in_again(
    paid: TestClient,  # noqa: F811
    anvil: Devchain,  # noqa: F811
) -> None:
    user = anvil.accounts[2]
    session = sign_in(paid, user)
    headers = {"Authorization": f"Bearer {session.token}"}
    data = bundle_bytes()
    paid.put(f"/v1/blobs/{sha(data)}", content=data)
    ok = paid.post("/v1/tasks", json={"bundle": sha(data)}, headers=headers)
    assert ok.status_code == 201, ok.text
    ctx = paid.app.state.coordinator  # type: ignore[attr-defined]
    with ctx.db.write() as db:  # a day later
        db.execute(update(SessionRow).values(expires_at=time.time() - 1))
    for method, url, body in (
        ("POST", "/v1/tasks", {"bundle": sha(data)}),
        ("POST", f"/v1/tasks/{ok.json()['id']}/cancel", None),
    ):
        late = paid.request(method, url, json=body, headers=headers)
        assert late.status_code == 401, late.text
        assert late.json()["detail"].startswith("session expired or unknown: sign in again")
        assert late.headers["WWW-Authenticate"] == "Bearer"
    again = {"Authorization": f"Bearer {sign_in(paid, user).token}"}  # reads are the owner's
    read = paid.get(f"/v1/tasks/{ok.json()['id']}", headers=again)
    assert read.json()["state"] == "awaiting_approval"


# --- verdicts on a paid task: signed by the verifier (EIP-191), checked by the coordinator ---


def _job() -> VerifyJob:
    return VerifyJob(id="v-1", kind="spot", segment=2, commitment=_commitment())


def _signed(key: Any, task_id: str, job: VerifyJob, verdict: Verdict) -> Verdict:
    text = verdict_message(task_id, job.committed.root, job.kind, job.segment, verdict)
    signature = key.sign_message(encode_defunct(text=text)).signature
    return verdict.model_copy(update={"signature": "0x" + bytes(signature).hex()})


def test_a_forged_or_replayed_verdict_signature_is_refused() -> None:
    verifier, forger = Account.create(), Account.create()
    task = TaskRow(id="t-paid", payment="{}")
    job = _job()
    leaf = job.committed.leaves[3].leaf
    verdict = Verdict(leaf=leaf, matches=False)
    _check_signature(task, job, _signed(verifier, task.id, job, verdict), verifier.address)

    def refused(candidate: Verdict) -> ApiError:
        with pytest.raises(ApiError) as info:
            _check_signature(task, job, candidate, verifier.address)
        return info.value

    forged = refused(_signed(forger, task.id, job, verdict))
    assert forged.status == 403 and f"signed by {forger.address}" in forged.detail
    # the verifier's real signature, moved to another task, segment or answer
    other_task = refused(_signed(verifier, "t-other", job, verdict))
    other_segment = refused(
        _signed(verifier, task.id, job.model_copy(update={"segment": 3}), verdict)
    )
    flipped = _signed(verifier, task.id, job, verdict).model_copy(update={"matches": True})
    for error in (other_task, other_segment, refused(flipped)):
        assert error.status == 403 and "not by this provider" in error.detail
    unsigned = refused(verdict)
    assert unsigned.status == 400 and "must be signed by the verifier" in unsigned.detail
    garbage = refused(verdict.model_copy(update={"signature": "0x" + "00" * 65}))
    assert garbage.status == 400 and "malformed" in garbage.detail
