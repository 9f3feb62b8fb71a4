"""Who may call what: every route of the coordinator, with the wrong account.

``POLICY`` lists every route of the app's own route table with its rule; a
route added without an entry fails ``test_every_route_has_a_rule``. The other
tests call the guarded routes with the wrong credentials (none, another
provider's token, another signed-in account) and check the status, the
message and that nothing changed. "Not yours" is answered as the rules in
``docs/security.md`` say: a task of another account is 404, exactly as an
unknown one (its existence is not leaked); a lease or job of another
provider is 403 (provider ids are public, lease ids go only to their holder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Devchain, Market, MarketConfig, sign_in, sign_order, start_anvil
from gensyn_jupyter.coordinator import ChainConfig, create_app

from .coordinator_helpers import Coord, bundle_bytes, sha
from .test_verification_api import _commitment, _committed

PUBLIC = "anyone"
POLICY: dict[tuple[str, str], str] = {
    ("GET", "/v1/health"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/chain"): PUBLIC,
    ("POST", "/v1/auth/nonce"): PUBLIC,
    ("POST", "/v1/auth/login"): "anyone with a fresh nonce and the address's signature",
    ("POST", "/v1/faucet"): "anyone, on a devnet only",
    ("HEAD", "/v1/blobs/{sha256}"): "as GET (test_blob_access.py)",
    ("PUT", "/v1/blobs/{sha256}"): "anyone: the bytes must hash to the name; makes an uploader",
    ("GET", "/v1/blobs/{sha256}"): "its uploaders, the owner of a task using it, that task's "
    "leased providers and its verifiers (bundle, inputs, their checkpoint); test_blob_access.py",
    ("POST", "/v1/tasks"): "anyone on a free network; a signed-in account on a paid one",
    ("GET", "/v1/tasks"): "unowned tasks and the caller's own",
    ("GET", "/v1/tasks/{task_id}"): "the task's owner (anyone for an unowned task)",
    ("GET", "/v1/tasks/{task_id}/events"): "the task's owner (anyone for an unowned task)",
    ("POST", "/v1/tasks/{task_id}/cancel"): "the task's owner (anyone for an unowned task)",
    ("POST", "/v1/tasks/{task_id}/order"): "the task's owner, signed in and signing",
    ("GET", "/v1/events"): "anyone; task events of the caller's own tasks and unowned ones",
    ("POST", "/v1/providers"): PUBLIC,
    ("GET", "/v1/providers"): PUBLIC,
    ("POST", "/v1/providers/{provider_id}/heartbeat"): "that provider's token",
    ("POST", "/v1/providers/{provider_id}/lease"): "that provider's token",
    ("POST", "/v1/leases/{lease_id}/events"): "the token of the provider holding the lease",
    ("POST", "/v1/leases/{lease_id}/result"): "the token of the provider holding the lease",
    ("POST", "/v1/leases/{lease_id}/checkpoint"): "the token of the provider holding the lease",
    ("POST", "/v1/leases/{lease_id}/verdict"): "the token of the provider given the job",
    ("POST", "/v1/leases/{lease_id}/replica"): "the token of the provider given the job",
}


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, read from its own OpenAPI schema."""
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_route_has_a_rule(make_app: Any) -> None:
    routes = _routes(make_app())
    missing = sorted(routes - set(POLICY))
    assert not missing, (
        f"routes without an authorization rule: {missing}; add each to POLICY in this file "
        "with a test that calls it with the wrong account, and to docs/security.md"
    )
    assert not sorted(set(POLICY) - routes), "POLICY names routes the app no longer has"


# --- providers, leases and verification jobs (a free network) ----------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _state(coord: Coord, task_id: str) -> tuple[str, int]:
    return (await coord.task(task_id))["state"], len(await coord.events(task_id))


async def _checkpoint(coord: Coord) -> dict[str, Any]:
    """A well-formed checkpoint post whose blobs are uploaded."""
    leaves = _commitment(3).model_dump(mode="json")["leaves"][:2]
    meta, tensors = await coord.upload(b"meta 1"), await coord.upload(b"tensors 1")
    return {
        "leaf": 1,
        "step": 4,
        "leaves": leaves,
        "dues": [0, 4],
        "every": 4,
        "next_due": 8,
        "blobs": [{"leaf": 1, "step": 4, "kind": "boundary", "meta": meta, "tensors": tensors}],
    }


@pytest.mark.anyio
async def test_a_provider_acts_only_on_itself_and_its_own_leases(coord: Coord) -> None:
    owner, thief = await coord.register("owner"), await coord.register("thief")
    task = await coord.submit()
    lease = (await owner.lease()).json()
    before = await _state(coord, task["id"])
    lid = lease["id"]
    calls = [
        ("POST", f"/v1/providers/{owner.id}/heartbeat", None),
        ("POST", f"/v1/providers/{owner.id}/lease", None),
        (
            "POST",
            f"/v1/leases/{lid}/events",
            {"events": [{"kind": "log", "data": {"message": "x"}}]},
        ),
        ("POST", f"/v1/leases/{lid}/result", {"duration_s": 1.0}),
        ("POST", f"/v1/leases/{lid}/checkpoint", await _checkpoint(coord)),
    ]
    for method, url, body in calls:
        anonymous = await coord.http.request(method, url, json=body)
        assert anonymous.status_code == 401, (url, anonymous.text)
        assert "bearer token" in anonymous.json()["detail"]
        forged = await coord.http.request(method, url, json=body, headers=_bearer("p-forged"))
        assert forged.status_code == 401, (url, forged.text)
        assert "not recognised" in forged.json()["detail"]
        stolen = await coord.http.request(method, url, json=body, headers=thief.auth)
        assert stolen.status_code == 403, (url, stolen.text)
        assert "belongs to" in stolen.json()["detail"], stolen.text
    # nothing changed: the owner still holds its lease and the task runs on
    assert await _state(coord, task["id"]) == before == ("running", 2)
    assert (
        await owner.post_events(lid, {"kind": "log", "data": {"message": "mine"}})
    ).status_code == 200
    assert (await owner.post_result(lid, duration_s=1.0)).status_code == 200


@pytest.mark.anyio
async def test_a_verifier_answers_only_the_job_it_was_given(coord: Coord) -> None:
    runner, verifier = await coord.register("runner"), await coord.register("verifier")
    other = await coord.register("other")
    task = await _committed(coord, runner)
    job = (await verifier.lease()).json()
    assert job["job"]["kind"] == "spot"
    leaf = _commitment().leaves[job["job"]["segment"] + 1].leaf
    verdict = {"leaf": leaf, "matches": False}
    for who in (runner, other):  # the runner itself, and a provider given no job
        stolen = await coord.http.post(
            f"/v1/leases/{job['id']}/verdict", json=verdict, headers=who.auth
        )
        assert stolen.status_code == 403, stolen.text
        assert "given to another provider" in stolen.json()["detail"]
    anonymous = await coord.http.post(f"/v1/leases/{job['id']}/verdict", json=verdict)
    assert anonymous.status_code == 401
    # a spot job is no replica job, whoever asks
    replica = await coord.http.post(
        f"/v1/leases/{job['id']}/replica", json={"duration_s": 1.0}, headers=verifier.auth
    )
    assert replica.status_code == 404 and "replica job" in replica.json()["detail"]
    assert (await coord.task(task["id"]))["state"] == "verifying"  # no forged mismatch landed
    ok = await coord.http.post(
        f"/v1/leases/{job['id']}/verdict", json={**verdict, "matches": True}, headers=verifier.auth
    )
    assert ok.status_code == 204, ok.text


# --- accounts on a paid network (a real anvil) --------------------------------------------

ETH = 10**18


@pytest.fixture(scope="module")
def anvil() -> Iterator[Devchain]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


def _paid_app(tmp_path: Path, anvil: Devchain, **options: Any) -> Any:
    acc = anvil.accounts
    market = Market.deploy(
        w3=Web3(HTTPProvider(anvil.rpc_url)),
        deployer=acc[0],
        config=MarketConfig(
            operator=acc[1].address,
            referee=acc[8].address,
            treasury=acc[9].address,
            min_stake=ETH,
            min_bond=ETH // 10,
            unbonding_delay=60,
            challenge_window=1,
        ),
    )
    return create_app(
        database_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
        blob_dir=tmp_path / "blobs",
        chain=ChainConfig(
            rpc_url=anvil.rpc_url,
            market=market.address,
            operator_key="0x" + bytes(acc[1].key).hex(),
            rate_wei_per_gpu_second=10**12,
            poll_seconds=0.2,
            from_block=int(market.w3.eth.block_number),
        ),
        **options,
    )


@pytest.fixture
def paid(tmp_path: Path, anvil: Devchain) -> Iterator[TestClient]:
    """A coordinator with escrow on anvil."""
    with TestClient(_paid_app(tmp_path, anvil), base_url="http://127.0.0.1:8765") as http:
        yield http


def _session(client: TestClient, account: LocalAccount) -> dict[str, str]:
    return _bearer(sign_in(client, account).token)


def _submit(client: TestClient, headers: dict[str, str], tag: str = "") -> dict[str, Any]:
    data = bundle_bytes(**({"data": sha(tag.encode())} if tag else {}))
    if tag:  # an input blob only this account uploaded
        put = client.put(f"/v1/blobs/{sha(tag.encode())}", content=tag.encode(), headers=headers)
        assert put.status_code in (200, 201), put.text
    put = client.put(f"/v1/blobs/{sha(data)}", content=data, headers=headers)
    assert put.status_code in (200, 201), put.text
    reply = client.post("/v1/tasks", json={"bundle": sha(data), "max_seconds": 30}, headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_an_account_cancels_and_approves_only_its_own_tasks(
    paid: TestClient, anvil: Devchain
) -> None:
    alice, bob = anvil.accounts[2], anvil.accounts[3]
    as_alice, as_bob = _session(paid, alice), _session(paid, bob)
    task = _submit(paid, as_alice)
    tid = task["id"]
    events = f"/v1/tasks/{tid}/events"
    events_before = len(paid.get(events, params={"format": "json"}, headers=as_alice).json())

    unknown = paid.post("/v1/tasks/t-0000000000/cancel", headers=as_bob)
    by_bob = paid.post(f"/v1/tasks/{tid}/cancel", headers=as_bob)
    assert (by_bob.status_code, unknown.status_code) == (404, 404)
    # another account's task and no task at all get the same answer, bar the id
    assert by_bob.json()["detail"] == unknown.json()["detail"].replace("t-0000000000", tid)
    assert by_bob.json()["detail"] == f"task {tid} not found among the tasks of {bob.address}"
    anonymous = paid.post(f"/v1/tasks/{tid}/cancel")
    assert anonymous.status_code == 404
    assert "sign in with the wallet that submitted it" in anonymous.json()["detail"]
    expired = paid.post(f"/v1/tasks/{tid}/cancel", headers=_bearer("not-a-session"))
    assert expired.status_code == 401 and "sign in again" in expired.json()["detail"]

    # bob approving alice's task with his own order: not found either, nothing queued
    from gensyn_jupyter.protocol import TaskOrder

    order = TaskOrder.model_validate(task["payment"]["order"])
    bobs = sign_order(bob, order.model_copy(update={"submitter": bob.address}))
    reply = paid.post(f"/v1/tasks/{tid}/order", json=bobs.model_dump(mode="json"), headers=as_bob)
    assert reply.status_code == 404, reply.text
    anonymous_order = paid.post(f"/v1/tasks/{tid}/order", json=bobs.model_dump(mode="json"))
    assert (
        anonymous_order.status_code == 401 and "sign in first" in anonymous_order.json()["detail"]
    )

    after = paid.get(f"/v1/tasks/{tid}", headers=as_alice).json()
    assert after["state"] == "awaiting_approval"
    assert len(paid.get(events, params={"format": "json"}, headers=as_alice).json()) == (
        events_before
    )
    mine = paid.post(f"/v1/tasks/{tid}/cancel", headers=as_alice)
    assert mine.status_code == 200 and mine.json()["state"] == "cancelled"


def test_a_paid_network_takes_tasks_from_signed_in_accounts_only(paid: TestClient) -> None:
    data = bundle_bytes()
    paid.put(f"/v1/blobs/{sha(data)}", content=data)
    for headers in ({}, _bearer("stale-token")):
        reply = paid.post("/v1/tasks", json={"bundle": sha(data)}, headers=headers)
        assert reply.status_code == 401, reply.text
    assert paid.get("/v1/tasks").json() == []


def test_blob_names_must_match_their_bytes(paid: TestClient) -> None:
    data = b"weights"
    wrong = hashlib.sha256(b"other").hexdigest()
    reply = paid.put(f"/v1/blobs/{wrong}", content=data)
    assert reply.status_code == 400, reply.text
    assert paid.head(f"/v1/blobs/{wrong}").status_code == 404


def test_an_account_reads_only_its_own_tasks_and_their_blobs(
    paid: TestClient, anvil: Devchain
) -> None:
    alice, bob = anvil.accounts[2], anvil.accounts[3]
    as_alice, as_bob = _session(paid, alice), _session(paid, bob)
    task = _submit(paid, as_alice, tag="alice's inputs")
    tid = task["id"]
    for url, params in ((f"/v1/tasks/{tid}", {}), (f"/v1/tasks/{tid}/events", {"format": "json"})):
        mine = paid.get(url, params=params, headers=as_alice)
        assert mine.status_code == 200, mine.text
        unknown = paid.get(url.replace(tid, "t-0000000000"), params=params, headers=as_bob)
        theirs = paid.get(url, params=params, headers=as_bob)
        assert (theirs.status_code, unknown.status_code) == (404, 404)
        assert theirs.json()["detail"] == unknown.json()["detail"].replace("t-0000000000", tid)
        anonymous = paid.get(url, params=params)
        assert anonymous.status_code == 404 and "sign in" in anonymous.json()["detail"]
        stale = paid.get(url, params=params, headers=_bearer("not-a-session"))
        assert stale.status_code == 401 and "sign in again" in stale.json()["detail"]
    with paid.stream("GET", f"/v1/tasks/{tid}/events", headers=as_bob) as sse:
        assert sse.status_code == 404  # the SSE stream too, before any event is sent
    assert [t["id"] for t in paid.get("/v1/tasks", headers=as_alice).json()] == [tid]
    assert paid.get("/v1/tasks", headers=as_bob).json() == []
    assert paid.get("/v1/tasks").json() == []
    by_name = paid.get("/v1/tasks", params={"account": alice.address}, headers=as_bob)
    assert by_name.status_code == 200 and by_name.json() == []
    # the task's blobs: its owner only (the bundle and the input alice uploaded)
    data = sha(b"alice's inputs")
    bundle = task["spec"]["bundle"]
    for name in (bundle, data):
        assert paid.get(f"/v1/blobs/{name}", headers=as_alice).status_code == 200
        assert paid.head(f"/v1/blobs/{name}", headers=as_alice).status_code == 200
        for headers in (as_bob, {}):
            assert paid.get(f"/v1/blobs/{name}", headers=headers).status_code == 404
            assert paid.head(f"/v1/blobs/{name}", headers=headers).status_code == 404
        assert paid.get(f"/v1/blobs/{name}", headers=_bearer("not-a-session")).status_code == 401
