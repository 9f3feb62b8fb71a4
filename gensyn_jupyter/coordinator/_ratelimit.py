"""A token bucket per caller: 429 with ``Retry-After`` when one sends too fast.

The caller is its bearer token when it sends one (a signed-in account's
session, or a provider's registration token), else its IP address. Each
caller's bucket holds ``burst`` requests and refills at ``per_second``; a
request that finds it empty is answered 429 before it reaches a route.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import error_response

__all__ = ["RateLimit", "RateLimitMiddleware"]

_MAX_CALLERS = 10_000


@dataclass(frozen=True)
class RateLimit:
    """How fast one caller may send requests.

    Parameters
    ----------
    per_second
        Sustained requests per second per caller.
    burst
        Requests a caller may send at once after a quiet spell.
    """

    per_second: float = 200.0
    burst: int = 1000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0) or self.burst < 1:
            raise ValueError(
                f"rate limit {self.per_second}/s, burst {self.burst}: both must be positive "
                "(to turn the limit off: rate_limit=None, or --requests-per-second 0)"
            )


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp = tokens, stamp


def _caller(scope: Scope) -> str:
    """The bearer token (hashed) when the request carries one, else the client's IP."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credential = value.partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                return "token:" + hashlib.sha256(credential.strip()).hexdigest()[:32]
    client = scope.get("client")
    return "ip:" + (str(client[0]) if client else "unknown")


class RateLimitMiddleware:
    """ASGI middleware answering 429 ``ErrorBody`` to a caller over its :class:`RateLimit`."""

    def __init__(
        self, app: ASGIApp, *, limit: RateLimit, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _take(self, caller: str) -> float:
        """Take one token; 0 when granted, else the seconds until one is available."""
        now = self.clock()
        limit = self.limit
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= _MAX_CALLERS:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(float(limit.burst), now)
        bucket.tokens = min(
            float(limit.burst), bucket.tokens + (now - bucket.stamp) * limit.per_second
        )
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / limit.per_second

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (their callers are as good as new)."""
        refill = self.limit.burst / self.limit.per_second
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= refill]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_CALLERS:  # all busy: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[
                : _MAX_CALLERS // 2
            ]:
                del self._buckets[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wait = self._take(_caller(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        limit = self.limit
        response = error_response(
            429,
            f"too many requests: this coordinator allows {limit.per_second:g} requests per "
            f"second per caller (bursts of {limit.burst}); retry in {retry} s",
            None,
            headers={"Retry-After": str(retry)},
        )
        await response(scope, receive, send)
