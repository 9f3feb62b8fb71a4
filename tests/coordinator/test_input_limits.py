"""Limits on what one caller may send: metric points per post, requests per second.

Body and blob sizes have their own tests (test_tasks_api, test_blobs); these
cover the limits added for untrusted providers and busy callers: each answer
is a 413 or 429 ``ErrorBody`` that says what the limit is and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gensyn_jupyter.coordinator import RateLimit
from gensyn_jupyter.coordinator._ratelimit import RateLimitMiddleware

from .coordinator_helpers import Coord

pytestmark = pytest.mark.anyio


def _points(n: int) -> dict[str, Any]:
    return {
        "kind": "metrics",
        "data": {"points": [{"step": i, "name": "loss", "value": 1.0} for i in range(n)]},
    }


async def test_too_many_metric_points_in_one_post_is_413_and_records_nothing(
    make_app: Callable[..., Any], client_for: Any
) -> None:
    async for coord in client_for(make_app(max_metric_points=50)):
        provider = await coord.register()
        task = await coord.submit()
        lease = (await provider.lease()).json()
        before = len(await coord.events(task["id"]))
        r = await provider.post_events(lease["id"], _points(30), _points(21))
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == (
            "51 metric points in one post; this coordinator takes at most 50: "
            "split them into several posts"
        )
        assert len(await coord.events(task["id"])) == before
        ok = await provider.post_events(lease["id"], _points(30), _points(20))
        assert ok.status_code == 200 and ok.json()["accepted"] == 2


async def test_a_caller_over_its_rate_gets_429_others_do_not(
    make_app: Callable[..., Any], client_for: Any
) -> None:
    app = make_app(rate_limit=RateLimit(per_second=0.01, burst=3))
    async for coord in client_for(app):
        provider = await coord.register()  # 1 request from this IP
        answers = [(await coord.http.get("/v1/health")).status_code for _ in range(3)]
        assert answers == [200, 200, 429]
        limited = await coord.http.get("/v1/providers")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"].isdigit() and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["detail"].startswith(
            "too many requests: this coordinator allows 0.01 requests per second per caller "
            "(bursts of 3); retry in "
        )
        # a provider with its own token has its own bucket
        beats = [(await provider.heartbeat()).status_code for _ in range(3)]
        assert beats == [200, 200, 200]
        assert (await provider.heartbeat()).status_code == 429


def test_a_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimitMiddleware(
        _never_called, limit=RateLimit(per_second=2.0, burst=2), clock=lambda: now[0]
    )
    assert [limiter._take("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter._take("a") == pytest.approx(0.5)  # half a second to the next token
    now[0] += 0.5
    assert limiter._take("a") == 0.0
    assert limiter._take("b") == 0.0  # another caller is untouched
    now[0] += 60
    assert [limiter._take("a") for _ in range(3)][-1] > 0  # refills to the burst, no more


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not reached")


@pytest.mark.parametrize(
    ("per_second", "burst"), [(0.0, 5), (-1.0, 5), (float("nan"), 5), (1.0, 0)]
)
def test_a_rate_limit_that_cannot_work_is_refused(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RateLimit(per_second=per_second, burst=burst)


async def test_a_body_that_is_not_utf8_gets_a_400_that_says_so(coord: Coord) -> None:
    for url in ("/v1/faucet", "/v1/tasks", "/v1/providers"):
        r = await coord.http.post(
            url, content=b"\xff\xfe{\x00", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, (url, r.text)
        assert (
            "not valid JSON" in r.json()["detail"]
            or "could not be read as JSON" in (r.json()["detail"])
        ), r.text
