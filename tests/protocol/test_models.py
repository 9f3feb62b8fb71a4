from __future__ import annotations

import pytest
from pydantic import ValidationError

from gensyn_jupyter.protocol import (
    TERMINAL_STATES,
    Bundle,
    Environment,
    TaskSpec,
    TaskState,
    is_sha256,
    sha256_hex,
)

SHA = sha256_hex(b"bundle")


def test_terminal_states_are_the_ends_of_a_task() -> None:
    assert TaskState.SETTLED.terminal and TaskState.FAILED.terminal
    assert not TaskState.RUNNING.terminal and not TaskState.QUEUED.terminal
    assert TaskState.CANCELLED in TERMINAL_STATES


def test_task_spec_rejects_bad_fields_by_name() -> None:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"bundle": "not-a-hash"})
    assert info.value.errors()[0]["loc"] == ("bundle",)
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"bundle": SHA, "gpus": 0})
    assert info.value.errors()[0]["loc"] == ("gpus",)
    with pytest.raises(ValidationError):
        TaskSpec.model_validate({"bundle": SHA, "surprise": 1})


def test_bundle_lists_the_blobs_its_inputs_need() -> None:
    other = sha256_hex(b"x")
    bundle = Bundle.model_validate(
        {
            "source": "x = 1",
            "inputs": [
                {"name": "X", "kind": "tree", "type_name": "torch.Tensor", "blob": other},
                {"name": "np", "kind": "module", "type_name": "module", "module": "numpy"},
            ],
            "environment": Environment(python="3.11", torch="2.13.0", platform="linux"),
        }
    )
    assert bundle.blobs() == {other}
    assert is_sha256(other) and not is_sha256(other.upper())
