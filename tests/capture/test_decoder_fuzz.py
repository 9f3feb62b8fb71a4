"""Hypothesis fuzzing of the decoders that read untrusted bytes.

The kernel decodes a provider's result (``decode_results``, ``decode_tree``);
a provider decodes a kernel's bundle (``Bundle`` JSON, then ``load_inputs`` for
its tree inputs). Whatever the bytes, each answers with a value or with its one
documented error (``ValueError``; pydantic's ``ValidationError`` for the bundle
model), never with another exception, a hang or a crash. Examples are bounded so
the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import save

from gensyn_jupyter.capture import decode_results, decode_tree, encode_tree, load_inputs
from gensyn_jupyter.capture._decode import tree_equal
from gensyn_jupyter.protocol import Bundle

_FUZZ = settings(
    max_examples=100, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_TAGS = ["$tuple", "$items", "$tensor", "$ndarray", "$device", "$dtype", "$pickle", "x"]
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_TAGS) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=20,
)


def _safetensors_like() -> st.SearchStrategy[bytes]:
    """Real safetensors, truncated or bit-flipped ones, and headers of random JSON."""
    real = save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)})
    headers = _json.map(lambda h: json.dumps(h).encode())
    return (
        st.binary(max_size=64)
        | st.integers(0, len(real)).map(lambda n: real[:n])
        | st.tuples(st.integers(0, len(real) - 1), st.integers(1, 255)).map(
            lambda p: real[: p[0]] + bytes([real[p[0]] ^ p[1]]) + real[p[0] + 1 :]
        )
        | st.tuples(headers, st.binary(max_size=32)).map(
            lambda hd: struct.pack("<Q", len(hd[0])) + hd[0] + hd[1]
        )
    )


@_FUZZ
@given(values=st.binary(max_size=200), tensors=st.none() | _safetensors_like())
def test_decode_results_on_arbitrary_bytes_only_raises_value_error(
    values: bytes, tensors: bytes | None
) -> None:
    with contextlib.suppress(ValueError):
        decode_results(values, tensors)


_entry = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["tree", "module_state", "optimizer_state", "refused", "pickle"]),
        "structure": _json,
    }
)


@_FUZZ
@given(
    outputs=st.dictionaries(st.text(max_size=6), _entry, max_size=3),
    tensors=st.none() | _safetensors_like(),
)
def test_decode_results_on_arbitrary_documents_only_raises_value_error(
    outputs: dict[str, Any], tensors: bytes | None
) -> None:
    document = json.dumps({"version": 1, "outputs": outputs}).encode()
    try:
        values = decode_results(document, tensors)
    except ValueError:
        return
    assert set(values) <= set(outputs)


@_FUZZ
@given(structure=_json)
def test_decode_tree_on_arbitrary_json_only_raises_value_error(structure: Any) -> None:
    tensors = {"w": torch.zeros(2), "x": torch.ones(1, dtype=torch.int64)}
    with contextlib.suppress(ValueError):
        decode_tree(structure, tensors)


_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=4).map(torch.tensor),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), inner, max_size=3)
    ),
    max_leaves=12,
)


@_FUZZ
@given(value=_plain)
def test_what_a_provider_encodes_the_kernel_decodes_to_an_equal_value(value: Any) -> None:
    structure, tensors = encode_tree(value)
    wire = json.loads(json.dumps(structure))  # what travels: JSON and safetensors bytes
    from safetensors.torch import load

    back = decode_tree(wire, load(save(tensors)) if tensors else {})
    assert tree_equal(value, back)


@_FUZZ
@given(text=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_a_bundle_of_arbitrary_json_is_a_validation_error(text: bytes) -> None:
    with contextlib.suppress(ValidationError):
        Bundle.model_validate_json(text)


@_FUZZ
@given(structure=_json, blob=_safetensors_like())
def test_load_inputs_on_arbitrary_tree_inputs_only_raises_value_error(
    structure: Any, blob: bytes
) -> None:
    sha = hashlib.sha256(blob).hexdigest()
    bundle = Bundle.model_validate(
        {
            "source": "pass\n",
            "inputs": [
                {"name": "x", "kind": "tree", "type_name": "t", "blob": sha, "structure": structure}
            ],
            "outputs": [],
            "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "linux"},
        }
    )
    with contextlib.suppress(ValueError):
        load_inputs(bundle, {sha: blob}.__getitem__)
