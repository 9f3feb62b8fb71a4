"""Readable unique ids and provider bearer tokens (stored only as sha256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["hash_token", "new_id", "new_token", "token_matches"]


def new_id(prefix: str) -> str:
    """A short random id such as ``t-3f9a01c2be`` (``prefix`` + ``-`` + 10 hex digits)."""
    return f"{prefix}-{secrets.token_hex(5)}"


def new_token() -> str:
    """A fresh bearer token for a provider."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its sha256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare ``token`` with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)
