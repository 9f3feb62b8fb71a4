"""Content addressing: every blob is named by the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import re

__all__ = ["SHA256_RE", "is_sha256", "sha256_hex"]

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: str) -> bool:
    """True when ``value`` is a lowercase 64-digit hex digest."""
    return bool(SHA256_RE.match(value))
