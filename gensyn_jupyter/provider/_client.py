"""The provider's HTTP client of the coordinator (one ``httpx.Client`` per process)."""

from __future__ import annotations

import httpx

from ..protocol import (
    BlobClient,
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


class ProviderClient:
    """Calls a provider makes: register, heartbeat, lease, events, result, blobs."""

    def __init__(self, *, base_url: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout, read=timeout + 65)
        )
        self.blobs = BlobClient(client=self._http)
        self.registration: ProviderRegistration | None = None

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

    def post_events(self, lease_id: str, events: list[EventIn]) -> EventsPostReply:
        body = EventsPost(events=events)
        response = self._http.post(
            f"/v1/leases/{lease_id}/events", json=body.model_dump(mode="json")
        )
        raise_for_error(response)
        return EventsPostReply.model_validate(response.json())

    def post_result(self, lease_id: str, manifest: ResultManifest) -> Task:
        response = self._http.post(
            f"/v1/leases/{lease_id}/result", json=manifest.model_dump(mode="json")
        )
        raise_for_error(response)
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

    def close(self) -> None:
        self._http.close()
