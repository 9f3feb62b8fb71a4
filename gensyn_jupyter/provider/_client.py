"""The provider's HTTP client of the coordinator (one ``httpx.Client`` per process).

It rides out a coordinator restart or a network flap: a request that could not
connect is tried again with backoff (for ``patience`` seconds); an events post
or a result that may have been lost on the way is sent again, and each events
post carries a number (``seq``) so that the coordinator stores a retried post
once. Only when the coordinator stays away longer than ``patience`` does a call
raise (the runner then keeps the events for its next post).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from ..protocol import (
    BlobClient,
    CheckpointPost,
    EventIn,
    EventsPost,
    EventsPostReply,
    Heartbeat,
    Lease,
    ProviderInfo,
    ProviderRegistration,
    ResultManifest,
    Task,
    Verdict,
    raise_for_error,
)

__all__ = ["ProviderClient"]

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_FIRST_DELAY = 0.2
_MAX_DELAY = 2.0


class _Reconnecting(httpx.HTTPTransport):
    """Tries a request again while it cannot connect (nothing was sent yet: always safe)."""

    def __init__(self, *, patience: float, stop: threading.Event) -> None:
        super().__init__()
        self._patience = patience
        self._stop = stop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self._patience
        delay = _FIRST_DELAY
        while True:
            try:
                return super().handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if self._stop.is_set() or time.monotonic() + delay > deadline:
                    raise
            self._stop.wait(delay)
            delay = min(delay * 2, _MAX_DELAY)


class ProviderClient:
    """Calls a provider makes: register, heartbeat, lease, events, result, blobs.

    Parameters
    ----------
    base_url
        The coordinator.
    timeout
        Seconds for one request (a lease long-poll gets its wait on top).
    patience
        How long a call keeps retrying while the coordinator cannot be reached
        (restarting, or the network between is down).
    """

    def __init__(self, *, base_url: str, timeout: float = 30.0, patience: float = 60.0) -> None:
        self.stop = threading.Event()
        """Set to give up retrying at once (the provider is shutting down)."""
        self.patience = patience
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, read=timeout + 65),
            transport=_Reconnecting(patience=patience, stop=self.stop),
        )
        self.blobs = BlobClient(client=self._http)
        self.registration: ProviderRegistration | None = None
        self._seqs: dict[str, int] = {}

    @property
    def provider_id(self) -> str:
        if self.registration is None:
            raise RuntimeError("the provider is not registered yet")
        return self.registration.provider.id

    @property
    def http(self) -> httpx.Client:
        return self._http

    def register(
        self, info: ProviderInfo, session_token: str | None = None
    ) -> ProviderRegistration:
        headers = {"Authorization": f"Bearer {session_token}"} if session_token else {}
        self._http.headers.pop("Authorization", None)
        response = self._http.post(
            "/v1/providers", json=info.model_dump(mode="json"), headers=headers
        )
        raise_for_error(response)
        self.registration = ProviderRegistration.model_validate(response.json())
        self._http.headers["Authorization"] = f"Bearer {self.registration.token}"
        return self.registration

    def heartbeat(self) -> Heartbeat:
        response = self._http.post(f"/v1/providers/{self.provider_id}/heartbeat")
        raise_for_error(response)
        return Heartbeat.model_validate(response.json())

    def lease(self, *, wait: float) -> Lease | None:
        response = self._http.post(f"/v1/providers/{self.provider_id}/lease", params={"wait": wait})
        if response.status_code == 204:
            return None
        raise_for_error(response)
        return Lease.model_validate(response.json())

    def _post_again(self, path: str, payload: dict[str, Any]) -> tuple[httpx.Response, bool]:
        """POST ``payload`` until an answer other than "try later" comes, within ``patience``.

        Returns the answer and whether an earlier attempt may have reached the
        coordinator (its answer lost on the way).
        """
        deadline = time.monotonic() + self.patience
        delay = _FIRST_DELAY
        maybe_sent = False
        while True:
            try:
                response = self._http.post(path, json=payload)
            except httpx.TransportError:
                maybe_sent = True
                if self.stop.is_set() or time.monotonic() + delay > deadline:
                    raise
            else:
                if response.status_code not in _RETRY_STATUSES or time.monotonic() > deadline:
                    return response, maybe_sent
            self.stop.wait(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def post_events(self, lease_id: str, events: list[EventIn]) -> EventsPostReply:
        """Post events once: a retry carries the same ``seq``, so nothing is stored twice.

        Raises (``httpx.HTTPError``) only when the coordinator stayed out of
        reach for ``patience`` seconds; the post's number is used up then, so
        the caller's next post (with these events again) is never mistaken for it.
        """
        seq = self._seqs.get(lease_id, 0) + 1
        body = EventsPost(events=events, seq=seq)
        try:
            response, _ = self._post_again(
                f"/v1/leases/{lease_id}/events", body.model_dump(mode="json")
            )
        finally:
            self._seqs[lease_id] = seq
        raise_for_error(response)
        return EventsPostReply.model_validate(response.json())

    def post_result(self, lease_id: str, manifest: ResultManifest) -> Task | None:
        """Post the lease's result; None when an earlier try got through but its answer was lost."""
        response, maybe_sent = self._post_again(
            f"/v1/leases/{lease_id}/result", manifest.model_dump(mode="json")
        )
        if maybe_sent and response.status_code == 409 and "result was posted" in response.text:
            return None
        raise_for_error(response)
        self._seqs.pop(lease_id, None)
        return Task.model_validate(response.json())

    def post_verdict(self, lease_id: str, verdict: Verdict) -> None:
        response = self._http.post(
            f"/v1/leases/{lease_id}/verdict", json=verdict.model_dump(mode="json")
        )
        raise_for_error(response)

    def post_replica(self, lease_id: str, manifest: ResultManifest) -> None:
        response = self._http.post(
            f"/v1/leases/{lease_id}/replica", json=manifest.model_dump(mode="json")
        )
        raise_for_error(response)

    def post_checkpoint(self, lease_id: str, post: CheckpointPost) -> None:
        """Tell the coordinator where this run would resume (its blobs uploaded first)."""
        response = self._http.post(
            f"/v1/leases/{lease_id}/checkpoint", json=post.model_dump(mode="json")
        )
        raise_for_error(response)

    def close(self) -> None:
        self.stop.set()
        self._http.close()
