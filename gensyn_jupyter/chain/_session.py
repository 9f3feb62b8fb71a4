"""Sign in to a coordinator with a local key (EIP-4361), for headless processes.

The signer and the provider daemons use this; a browser wallet does the same
two calls from the sidebar panel.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from eth_account.signers.local import LocalAccount

from ..protocol import ChainInfo, LoginRequest, Session, SiweChallenge, raise_for_error
from ._siwe import SiweMessage, sign_siwe

__all__ = ["chain_info", "sign_in"]


def chain_info(http: httpx.Client) -> ChainInfo | None:
    """The coordinator's ``GET /v1/chain``, or None when it runs without a chain."""
    response = http.get("/v1/chain")
    if response.status_code == 404:
        return None
    raise_for_error(response)
    return ChainInfo.model_validate(response.json())


def sign_in(http: httpx.Client, account: LocalAccount) -> Session:
    """Ask a nonce, sign the EIP-4361 message with ``account``, and open a session.

    Raises
    ------
    protocol.CoordinatorError
        When the coordinator refuses (its message says why).
    """
    response = http.post("/v1/auth/nonce")
    raise_for_error(response)
    challenge = SiweChallenge.model_validate(response.json())
    message = SiweMessage.create(
        domain=challenge.domain,
        address=account.address,
        uri=challenge.uri,
        chain_id=challenge.chain_id,
        statement=challenge.statement,
        nonce=challenge.nonce,
        expires_in=timedelta(minutes=5),
    )
    body = LoginRequest(message=message.to_text(), signature=sign_siwe(account, message))
    response = http.post("/v1/auth/login", json=body.model_dump())
    raise_for_error(response)
    return Session.model_validate(response.json())
