"""Sign-In with Ethereum: the exact EIP-4361 text, a strict parser, and why a sign-in fails."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from hypothesis import given, settings
from hypothesis import strategies as st

from gensyn_jupyter.chain._siwe import (
    SiweError,
    SiweMessage,
    new_nonce,
    sign_siwe,
    verify_siwe,
)

ALICE: LocalAccount = Account.from_key("0x" + "11" * 32)
MALLORY: LocalAccount = Account.from_key("0x" + "22" * 32)

# The example message of EIP-4361, verbatim.
EIP_EXAMPLE = """\
service.invalid wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.invalid/tos

URI: https://service.invalid/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""

ISSUED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _message(**changes: object) -> SiweMessage:
    fields: dict[str, object] = {
        "domain": "localhost:8888",
        "address": ALICE.address,
        "statement": "Sign in to the gensyn-jupyter coordinator.",
        "uri": "http://localhost:8888/lab",
        "chain_id": 31337,
        "nonce": "abcDEF123456789xy",
        "issued_at": "2030-01-02T03:04:05Z",
        "expiration_time": "2030-01-02T03:09:05Z",
    }
    fields.update(changes)
    return SiweMessage(**fields)  # type: ignore[arg-type]


def _verify(text: str, signature: str, **overrides: object) -> str:
    kwargs: dict[str, object] = {
        "domain": "localhost:8888",
        "nonce": "abcDEF123456789xy",
        "chain_id": 31337,
        "now": ISSUED + timedelta(seconds=10),
    }
    kwargs.update(overrides)
    return verify_siwe(text, signature, **kwargs)  # type: ignore[arg-type]


def test_the_eip_4361_example_parses_and_prints_back_exactly() -> None:
    message = SiweMessage.parse(EIP_EXAMPLE)
    assert message.domain == "service.invalid"
    assert message.address == "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    assert message.statement == (
        "I accept the ServiceOrg Terms of Service: https://service.invalid/tos"
    )
    assert (message.uri, message.version, message.chain_id) == (
        "https://service.invalid/login",
        "1",
        1,
    )
    assert (message.nonce, message.issued_at) == ("32891756", "2021-09-30T16:25:24Z")
    assert message.expiration_time is message.not_before is message.request_id is None
    assert message.resources == (
        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
        "https://example.com/my-web2-claim.json",
    )
    assert message.to_text() == EIP_EXAMPLE


def test_every_optional_field_is_printed_in_the_eip_order() -> None:
    message = _message(
        not_before="2030-01-02T03:04:00.5+01:00",
        request_id="req-42",
        resources=("https://example.com/a",),
        scheme="https",
    )
    assert message.to_text() == (
        "https://localhost:8888 wants you to sign in with your Ethereum account:\n"
        f"{ALICE.address}\n"
        "\n"
        "Sign in to the gensyn-jupyter coordinator.\n"
        "\n"
        "URI: http://localhost:8888/lab\n"
        "Version: 1\n"
        "Chain ID: 31337\n"
        "Nonce: abcDEF123456789xy\n"
        "Issued At: 2030-01-02T03:04:05Z\n"
        "Expiration Time: 2030-01-02T03:09:05Z\n"
        "Not Before: 2030-01-02T03:04:00.5+01:00\n"
        "Request ID: req-42\n"
        "Resources:\n"
        "- https://example.com/a"
    )
    assert SiweMessage.parse(message.to_text()) == message


def test_a_message_without_statement_keeps_the_two_empty_lines_of_the_grammar() -> None:
    text = _message(statement=None, expiration_time=None).to_text()
    assert f"{ALICE.address}\n\n\nURI: " in text
    assert SiweMessage.parse(text).statement is None
    assert SiweMessage.parse(text).to_text() == text


def test_create_fills_a_fresh_nonce_and_utc_times() -> None:
    message = SiweMessage.create(
        domain="localhost:8888",
        address=ALICE.address.lower(),
        uri="http://localhost:8888/lab",
        chain_id=31337,
        issued_at=datetime(2030, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        expires_in=timedelta(minutes=5),
    )
    assert message.address == ALICE.address
    assert message.issued_at == "2030-01-02T03:04:05Z"
    assert message.expiration_time == "2030-01-02T03:09:05Z"
    assert len(message.nonce) == 17 and message.nonce.isalnum()


def test_new_nonce_is_17_letters_and_digits_and_never_repeats() -> None:
    nonces = {new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(len(n) == 17 and set(n) <= set(string.ascii_letters + string.digits) for n in nonces)


_GOOD = _message().to_text()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (_GOOD.replace(ALICE.address, ALICE.address.lower()), "EIP-55"),
        (_GOOD.replace(" wants you", " want you"), "first line"),
        (_GOOD.replace("Version: 1", "Version: 2"), "version '2'"),
        (_GOOD.replace("Chain ID: 31337", "Chain ID: 031337"), "Chain ID '031337'"),
        (_GOOD.replace("Chain ID: 31337", "Chain ID: -1"), "Chain ID '-1'"),
        (_GOOD.replace("Nonce: abcDEF123456789xy", "Nonce: abc123"), "nonce"),
        (_GOOD.replace("Nonce: abcDEF123456789xy", "Nonce: abcDEF12345-789"), "nonce"),
        (_GOOD.replace("2030-01-02T03:04:05Z", "2030-01-02 03:04:05"), "RFC 3339"),
        (_GOOD.replace("2030-01-02T03:04:05Z", "2030-02-30T03:04:05Z"), "not a valid date"),
        (_GOOD.replace("URI: http://", "URI: not a uri "), "URI"),
        (_GOOD.replace("\nVersion: 1", ""), "must be 'Version: ...'"),
        (_GOOD + "\n", "unexpected line"),
        (_GOOD + "\nResources:", "at least one"),
        (_GOOD + "\nRequest ID: 1\nNot Before: 2030-01-02T03:04:05Z", "unexpected line 13"),
        (_GOOD.replace("\n\nURI", "\nURI"), "followed by an empty line"),
        (_GOOD.replace("coordinator.", 'coordinator "now"'), "statement"),
        (_GOOD.replace("\r\n", "\n").replace("\n", "\r\n"), "first line"),
        (_GOOD.split("\nURI")[0], "the end of the message"),
        ("", "first line"),
    ],
)
def test_the_parser_refuses_malformed_messages_saying_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(SiweError) as info:
        SiweMessage.parse(text)
    assert why in str(info.value)


def test_building_a_message_checks_its_fields() -> None:
    with pytest.raises(SiweError, match="nonce"):
        _message(nonce="short")
    with pytest.raises(SiweError, match="chain ID"):
        _message(chain_id=0)
    with pytest.raises(SiweError, match="domain"):
        _message(domain="evil.com/path")


def test_a_signed_message_verifies_to_the_signer() -> None:
    message = _message()
    signature = sign_siwe(ALICE, message)
    digest = encode_defunct(text=message.to_text())
    assert Account.recover_message(digest, signature=signature) == ALICE.address  # personal_sign
    assert _verify(message.to_text(), signature) == ALICE.address


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"domain": "evil.example"}, "message is for 'localhost:8888' but this is 'evil.example'"),
        ({"nonce": "someOtherNonce123"}, "nonce does not match"),
        ({"chain_id": 1}, "message is for chain 31337 but this network is chain 1"),
        ({"now": ISSUED + timedelta(minutes=5)}, "message expired at 2030-01-02T03:09:05Z"),
    ],
)
def test_verification_says_why_a_sign_in_is_refused(overrides: dict[str, object], why: str) -> None:
    message = _message()
    with pytest.raises(SiweError) as info:
        _verify(message.to_text(), sign_siwe(ALICE, message), **overrides)
    assert why in str(info.value)


def test_a_message_used_before_its_not_before_time_is_refused() -> None:
    message = _message(not_before="2030-01-02T03:05:00Z")
    with pytest.raises(SiweError, match="not valid before 2030-01-02T03:05:00Z"):
        _verify(message.to_text(), sign_siwe(ALICE, message))
    later = ISSUED + timedelta(minutes=1)
    assert _verify(message.to_text(), sign_siwe(ALICE, message), now=later) == ALICE.address


def test_a_message_claiming_alice_but_signed_by_mallory_is_refused() -> None:
    message = _message()
    with pytest.raises(SiweError) as info:
        _verify(message.to_text(), sign_siwe(MALLORY, message))
    assert str(info.value) == (
        f"message claims {ALICE.address} but was signed by {MALLORY.address}: "
        "sign in with that account"
    )


def test_text_changed_after_signing_is_refused() -> None:
    message = _message()
    signature = sign_siwe(ALICE, message)
    changed = message.to_text().replace("Sign in to", "Sign into")
    with pytest.raises(SiweError, match="but was signed by"):
        _verify(changed, signature)


@pytest.mark.parametrize("signature", ["0x1234", "0x" + "zz" * 65, "0x" + "00" * 65, ""])
def test_a_garbage_signature_is_a_bad_signature(signature: str) -> None:
    with pytest.raises(SiweError, match="bad signature"):
        _verify(_message().to_text(), signature)


_ALNUM = string.ascii_letters + string.digits
_SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?"
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat(timespec="seconds").replace("+00:00", "Z"))
_uris = st.builds(
    lambda scheme, rest: f"{scheme}:{rest}",
    st.sampled_from(["https", "http", "ipfs", "urn"]),
    st.text(_SAFE, max_size=30),
)


@settings(max_examples=150, deadline=None)
@given(
    domain=st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    key=st.integers(min_value=1, max_value=2**160 - 1),
    statement=st.none() | st.text(_SAFE + " ", min_size=1, max_size=60),
    uri=_uris,
    chain_id=st.integers(min_value=1, max_value=2**64),
    nonce=st.text(_ALNUM, min_size=8, max_size=32),
    issued_at=_times,
    expiration_time=st.none() | _times,
    not_before=st.none() | _times,
    request_id=st.none() | st.text(_ALNUM + "-._~%:@", max_size=20),
    resources=st.lists(_uris, max_size=3).map(tuple),
)
def test_any_valid_message_round_trips_through_text_exactly(
    domain: str,
    key: int,
    statement: str | None,
    uri: str,
    chain_id: int,
    nonce: str,
    issued_at: str,
    expiration_time: str | None,
    not_before: str | None,
    request_id: str | None,
    resources: tuple[str, ...],
) -> None:
    from eth_utils.address import to_checksum_address

    message = SiweMessage(
        domain=domain,
        address=to_checksum_address(key.to_bytes(20, "big")),
        statement=statement,
        uri=uri,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=resources,
    )
    text = message.to_text()
    parsed = SiweMessage.parse(text)
    assert parsed == message
    assert parsed.to_text() == text
    assert replace(parsed, nonce=nonce) == message
