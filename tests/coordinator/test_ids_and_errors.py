"""Ids, tokens and the wording of validation errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gensyn_jupyter.coordinator._errors import ApiError, validation_problem
from gensyn_jupyter.coordinator._ids import hash_token, new_id, new_token, token_matches
from gensyn_jupyter.protocol import Bundle, TaskSpec


def test_ids_are_short_readable_and_unique() -> None:
    ids = {new_id("t") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"t-[0-9a-f]{10}", i) for i in ids)


def test_tokens_are_stored_hashed_and_compared() -> None:
    token = new_token()
    stored = hash_token(token)
    assert token not in stored and len(stored) == 64
    assert token_matches(token, stored)
    assert not token_matches(token + "x", stored)
    assert new_token() != token


def test_validation_problem_names_the_nested_field() -> None:
    with pytest.raises(ValidationError) as info:
        Bundle.model_validate(
            {
                "source": "",
                "environment": {"python": "3", "torch": "2", "platform": "x"},
                "inputs": [{"name": "x", "kind": "bogus", "type_name": "int"}],
            }
        )
    detail, field = validation_problem(info.value)
    assert field == "inputs.0.kind"
    assert detail.startswith("field 'inputs.0.kind': Input should be")


def test_validation_problem_with_prefix_and_bad_json() -> None:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"bundle": "0" * 64, "gpus": 0})
    assert validation_problem(info.value, "spec") == (
        "field 'spec.gpus': Input should be greater than or equal to 1",
        "spec.gpus",
    )
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate_json(b"{nope")
    detail, field = validation_problem(info.value)
    assert detail.startswith("not valid JSON") and field is None


def test_api_error_carries_status_field_and_headers() -> None:
    err = ApiError(401, "no", headers={"WWW-Authenticate": "Bearer"})
    assert (err.status, err.detail, err.field, err.headers) == (
        401,
        "no",
        None,
        {"WWW-Authenticate": "Bearer"},
    )


@pytest.mark.anyio
async def test_a_crash_answers_500_error_body_without_a_traceback(
    make_app: Callable[..., Any],
) -> None:
    app = make_app()

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
        r = await http.get("/v1/boom")
    assert r.status_code == 500
    assert r.json() == {
        "detail": "internal error in the coordinator; its log has the details",
        "field": None,
    }
    assert "secret" not in r.text and "Traceback" not in r.text
