"""Sign-In with Ethereum (EIP-4361): the message, a strict parser, signing and verification.

The server extension issues a nonce, the wallet signs the message text with
``personal_sign`` (EIP-191), and :func:`verify_siwe` turns the text and the
signature back into the signer's address, or says exactly what is wrong.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.exceptions import ValidationError

__all__ = ["SiweError", "SiweMessage", "new_nonce", "sign_siwe", "verify_siwe"]

_HEADER = " wants you to sign in with your Ethereum account:"
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
_DOMAIN = re.compile(
    rf"^(?:[{_UNRESERVED}%{_SUB_DELIMS}:]*@)?"
    rf"(?:\[[0-9A-Fa-f:.vV{_UNRESERVED}{_SUB_DELIMS}]+\]|[{_UNRESERVED}%{_SUB_DELIMS}]+)"
    r"(?::[0-9]*)?$"
)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_STATEMENT = re.compile(rf"^[{_UNRESERVED}:/?#\[\]@{_SUB_DELIMS} ]+$")
_URI = re.compile(rf"^[A-Za-z][A-Za-z0-9+\-.]*:[{_UNRESERVED}:/?#\[\]@{_SUB_DELIMS}%]*$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_CHAIN_ID = re.compile(r"^[1-9][0-9]*$")
_REQUEST_ID = re.compile(rf"^[{_UNRESERVED}%{_SUB_DELIMS}:@]*$")
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_NONCE_ALPHABET = string.ascii_letters + string.digits
_REQUIRED: tuple[tuple[str, str], ...] = (("URI", "uri"), ("Version", "version"))
_REQUIRED += (("Chain ID", "chain_id"), ("Nonce", "nonce"), ("Issued At", "issued_at"))
_OPTIONAL = (
    ("Expiration Time", "expiration_time"),
    ("Not Before", "not_before"),
    ("Request ID", "request_id"),
)


class SiweError(ValueError):
    """A sign-in message that is malformed, or that does not sign this user in here."""


def _parse_time(name: str, text: str) -> datetime:
    match = _TIME.match(text)
    if match is None:
        raise SiweError(f"{name} {text!r} is not an RFC 3339 date-time like 2021-09-30T16:25:24Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7) or "", match.group(8)
    tz: timezone = UTC
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        if delta >= timedelta(hours=24):
            raise SiweError(f"{name} {text!r} has an out-of-range time zone offset")
        tz = timezone(sign * delta)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise SiweError(f"{name} {text!r} is not a valid date-time: {exc}") from exc


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class SiweMessage:
    """An EIP-4361 sign-in message; every field is checked when it is built.

    Time fields are kept as their RFC 3339 text so that a parsed message
    prints back exactly as it was signed. Build a fresh one with
    :meth:`create`, read a signed one with :meth:`parse`.

    Raises
    ------
    SiweError
        If any field does not follow EIP-4361.
    """

    domain: str
    address: str
    statement: str | None = None
    uri: str
    version: str = "1"
    chain_id: int
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    scheme: str | None = None

    def __post_init__(self) -> None:
        _check(_DOMAIN, "domain", self.domain)
        if not _ADDRESS.match(self.address) or not is_checksum_address(self.address):
            raise SiweError(f"address {self.address!r} is not an EIP-55 checksummed address")
        if self.statement is not None:
            _check(_STATEMENT, "statement", self.statement)
        _check(_URI, "URI", self.uri)
        if self.version != "1":
            raise SiweError(f"version {self.version!r} is not supported: only version 1 is")
        if type(self.chain_id) is not int or self.chain_id <= 0:
            raise SiweError(f"chain ID {self.chain_id!r} is not a positive integer")
        _check(_NONCE, "nonce (at least 8 letters or digits)", self.nonce)
        _parse_time("Issued At", self.issued_at)
        for tag, name in _OPTIONAL:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "request_id":
                _check(_REQUEST_ID, tag, value)
            else:
                _parse_time(tag, value)
        if not isinstance(self.resources, tuple):
            object.__setattr__(self, "resources", tuple(self.resources))
        for resource in self.resources:
            _check(_URI, "resource", resource)
        if self.scheme is not None:
            _check(_SCHEME, "scheme", self.scheme)

    @classmethod
    def create(
        cls,
        *,
        domain: str,
        address: str,
        uri: str,
        chain_id: int,
        statement: str | None = None,
        nonce: str | None = None,
        issued_at: datetime | None = None,
        expires_in: timedelta | None = None,
        request_id: str | None = None,
        resources: tuple[str, ...] = (),
    ) -> SiweMessage:
        """A new message issued now (or at ``issued_at``), with a fresh nonce by default.

        Parameters
        ----------
        domain, address, uri, chain_id, statement, request_id, resources
            As in EIP-4361; ``address`` is checksummed here.
        nonce
            Defaults to :func:`new_nonce`.
        issued_at
            Defaults to the current UTC time; naive times are taken as UTC.
        expires_in
            When given, the message expires this long after ``issued_at``.
        """
        issued = issued_at or datetime.now(UTC)
        return cls(
            domain=domain,
            address=to_checksum_address(address),
            statement=statement,
            uri=uri,
            chain_id=chain_id,
            nonce=nonce or new_nonce(),
            issued_at=_format_time(issued),
            expiration_time=None if expires_in is None else _format_time(issued + expires_in),
            request_id=request_id,
            resources=resources,
        )

    def to_text(self) -> str:
        """The exact EIP-4361 text a wallet shows and signs (no trailing newline)."""
        prefix = f"{self.scheme}://" if self.scheme else ""
        lines = [f"{prefix}{self.domain}{_HEADER}", self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines.append("")
        for tag, name in (*_REQUIRED, *_OPTIONAL):
            if getattr(self, name) is not None:
                lines.append(f"{tag}: {getattr(self, name)}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """Read an EIP-4361 message; anything that does not follow the grammar is refused.

        Raises
        ------
        SiweError
            Naming the first line or field that is wrong.
        """
        return _parse(cls, text)


def _check(pattern: re.Pattern[str], name: str, value: object) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise SiweError(f"{name} {value!r} is not valid in a sign-in message")


def _parse(cls: type[SiweMessage], text: str) -> SiweMessage:
    lines = text.split("\n")
    if not lines[0].endswith(_HEADER):
        raise SiweError(f"first line must end with {_HEADER.strip()!r}, got {lines[0]!r}")
    origin = lines[0][: -len(_HEADER)]
    scheme: str | None = None
    domain = origin
    if "://" in origin:
        scheme, _, domain = origin.partition("://")
    if len(lines) < 4 or lines[2] != "":
        raise SiweError("the address must be followed by an empty line")
    address = lines[1]
    if lines[3] == "":
        statement, pos = None, 4
    else:
        statement, pos = lines[3], 5
        if len(lines) <= 4 or lines[4] != "":
            raise SiweError("the statement must be followed by an empty line")
    fields: dict[str, str] = {}
    for tag, name in _REQUIRED:
        fields[name] = _field(lines, pos, tag)
        pos += 1
    optional: dict[str, str] = {}
    for tag, name in _OPTIONAL:
        if pos < len(lines) and lines[pos].startswith(f"{tag}: "):
            optional[name] = _field(lines, pos, tag)
            pos += 1
    resources: list[str] = []
    if pos < len(lines) and lines[pos] == "Resources:":
        pos += 1
        while pos < len(lines) and lines[pos].startswith("- "):
            resources.append(lines[pos][2:])
            pos += 1
        if not resources:
            raise SiweError("'Resources:' must be followed by at least one '- URI' line")
    if pos != len(lines):
        raise SiweError(f"unexpected line {pos + 1}: {lines[pos]!r}")
    chain_id = fields.pop("chain_id")
    if not _CHAIN_ID.match(chain_id):
        raise SiweError(f"Chain ID {chain_id!r} is not a positive decimal integer")
    return cls(
        domain=domain,
        address=address,
        statement=statement,
        chain_id=int(chain_id),
        resources=tuple(resources),
        scheme=scheme,
        **fields,
        **optional,
    )


def _field(lines: list[str], pos: int, tag: str) -> str:
    if pos >= len(lines) or not lines[pos].startswith(f"{tag}: "):
        got = repr(lines[pos]) if pos < len(lines) else "the end of the message"
        raise SiweError(f"line {pos + 1} must be '{tag}: ...', got {got}")
    return lines[pos][len(tag) + 2 :]


def new_nonce() -> str:
    """A fresh random nonce: 17 letters and digits from :mod:`secrets` (about 101 bits)."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(17))


def sign_siwe(account: LocalAccount, message: SiweMessage) -> str:
    """Sign ``message`` with ``account`` as a wallet does (``personal_sign``, EIP-191).

    Returns
    -------
    str
        The 65-byte signature as ``0x`` hex.
    """
    signed = account.sign_message(encode_defunct(text=message.to_text()))
    return "0x" + bytes(signed.signature).hex()


def verify_siwe(
    text: str,
    signature: str,
    *,
    domain: str,
    nonce: str,
    chain_id: int,
    now: datetime | None = None,
) -> str:
    """Check a signed sign-in message and return who signed it.

    Parameters
    ----------
    text
        The exact message text the wallet signed.
    signature
        The ``personal_sign`` signature, ``0x`` hex.
    domain
        This server's domain (host and port), which the message must name.
    nonce
        The nonce this server issued for this sign-in, not yet used.
    chain_id
        The chain this server works with.
    now
        The current time (defaults to UTC now; naive times are taken as UTC).

    Returns
    -------
    str
        The signer's checksum address.

    Raises
    ------
    SiweError
        If the text is malformed, names another domain, nonce or chain, is
        expired or not yet valid, or the signature is bad or not the address's.
    """
    message = SiweMessage.parse(text)
    if message.domain != domain:
        raise SiweError(
            f"message is for {message.domain!r} but this is {domain!r}: "
            "sign in from this server's page"
        )
    if message.nonce != nonce:
        raise SiweError(
            "nonce does not match the one this server issued (it may have been used "
            "already): request a new sign-in message"
        )
    if message.chain_id != chain_id:
        raise SiweError(
            f"message is for chain {message.chain_id} but this network is chain {chain_id}: "
            "switch the wallet's network and sign in again"
        )
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    expires, not_before = message.expiration_time, message.not_before
    if expires is not None and moment >= _parse_time("Expiration Time", expires):
        raise SiweError(f"message expired at {expires}: request a new sign-in message")
    if not_before is not None and moment < _parse_time("Not Before", not_before):
        raise SiweError(f"message is not valid before {not_before}: try again then")
    signer = _recover(text, signature)
    if signer != message.address:
        raise SiweError(
            f"message claims {message.address} but was signed by {signer}: "
            "sign in with that account"
        )
    return signer


def _recover(text: str, signature: str) -> str:
    hexsig = signature.removeprefix("0x")
    if not re.fullmatch(r"[0-9a-fA-F]{130}", hexsig):
        raise SiweError("bad signature: expected 65 bytes as hex")
    try:
        signer: str = Account.recover_message(
            encode_defunct(text=text), signature=bytes.fromhex(hexsig)
        )
    except (BadSignature, ValidationError, ValueError) as exc:
        raise SiweError(f"bad signature: {exc}") from exc
    return signer
