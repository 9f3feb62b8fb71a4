"""A malicious provider's result: refused with a clear message, and no code of its runs.

Every payload here goes through what the kernel does with a result: the bytes
of the values and tensors blobs into ``decode_results``, the decoded values
into ``apply_results``. The pickle payloads would create a sentinel file when
unpickled; the file never appears.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors.torch import save

from gensyn_jupyter.capture import decode_results, encode_results
from gensyn_jupyter.kernel._loading import apply_results
from gensyn_jupyter.protocol import OutputInfo

from ..coordinator.test_live_server import server  # noqa: F401  (fixture: `gensyn coordinator`)


class _Payload:
    """Unpickling this runs ``os.system``: it writes the sentinel file."""

    def __init__(self, sentinel: pathlib.Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.sentinel}",))


@pytest.fixture
def sentinel(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the provider's pickle ran code in the kernel"


def _values(**outputs: Any) -> bytes:
    return json.dumps({"version": 1, "outputs": outputs}).encode()


def _pickle_payloads(sentinel: pathlib.Path) -> list[bytes]:
    import pickle

    payload = _Payload(sentinel)
    saved = io.BytesIO()
    torch.save({"w": payload}, saved)  # a .pt file: a zip holding a pickle
    return [pickle.dumps(payload, protocol=p) for p in (0, 2, 5)] + [saved.getvalue()]


def test_a_pickle_as_the_values_blob_is_refused_and_never_runs(sentinel: pathlib.Path) -> None:
    for payload in _pickle_payloads(sentinel):
        with pytest.raises(ValueError, match="results are not valid JSON"):
            decode_results(payload, None)


def test_a_pickle_as_the_tensors_blob_is_refused_and_never_runs(sentinel: pathlib.Path) -> None:
    values = _values(w={"kind": "tree", "structure": {"$tensor": "w"}})
    for payload in _pickle_payloads(sentinel):
        with pytest.raises(ValueError, match="results tensors are not valid safetensors"):
            decode_results(values, payload)


def test_a_pickle_hidden_in_the_values_json_is_only_a_string(sentinel: pathlib.Path) -> None:
    import base64
    import pickle

    text = base64.b64encode(pickle.dumps(_Payload(sentinel))).decode()
    values = decode_results(_values(blob={"kind": "tree", "structure": text}), None)
    assert values == {"blob": text}
    with pytest.raises(ValueError, match="unknown tag"):
        decode_results(_values(x={"kind": "tree", "structure": {"$pickle": text}}), None)


def _safetensors(header: Any, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


_VALUES = _values(w={"kind": "tree", "structure": {"$tensor": "w"}})


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x01\x02", id="truncated-length"),
        pytest.param(struct.pack("<Q", 2**62) + b"{}", id="header-length-beyond-the-file"),
        pytest.param(_safetensors(b"{not json"), id="header-not-json"),
        pytest.param(_safetensors([1, 2]), id="header-not-an-object"),
        pytest.param(
            _safetensors({"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}),
            id="oversized-tensor-claims-4TiB",
        ),
        pytest.param(
            _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
            id="shape-disagrees-with-offsets",
        ),
        pytest.param(
            _safetensors({"w": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
            id="unknown-dtype",
        ),
    ],
)
def test_a_safetensors_blob_with_a_bad_header_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="results tensors are not valid safetensors"):
        decode_results(_VALUES, blob)


def test_a_tensor_key_that_is_not_in_the_blob_is_refused() -> None:
    blob = save({"other": torch.zeros(2)})
    with pytest.raises(ValueError, match="tensor 'w' is missing from the tensors"):
        decode_results(_VALUES, blob)


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def test_a_nan_state_dict_with_wrong_shapes_leaves_the_model_untouched() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # the provider's "model": NaN everywhere, right shapes but for the last layer
    bad = {k: torch.full_like(v, float("nan")) for k, v in before.items()}
    bad["1.weight"] = torch.full((5, 3), float("nan"))
    encoded = encode_results({"model": bad}, ["model"])
    values = decode_results(encoded.values_json, encoded.tensors)
    info = [OutputInfo(name="model", kind="module_state", type_name="torch.nn.Sequential")]
    namespace: dict[str, Any] = {"model": model}
    with pytest.raises(RuntimeError) as refused:
        apply_results(namespace, values, info, handle_name="handle")
    message = str(refused.value)
    assert "could not load the trained state into `model`" in message
    assert "1.weight" in message and "handle.outputs['model']" in message
    assert namespace["model"] is model
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} was overwritten by the refused state"


def test_a_state_dict_with_missing_or_extra_keys_leaves_the_model_untouched() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    extra = {**{k: torch.zeros_like(v) for k, v in before.items()}, "2.weight": torch.zeros(1)}
    missing = {k: torch.zeros_like(v) for k, v in before.items() if k != "0.bias"}
    info = [OutputInfo(name="model", kind="module_state", type_name="torch.nn.Sequential")]
    for state, word in ((extra, "2.weight"), (missing, "0.bias")):
        with pytest.raises(RuntimeError, match=word):
            apply_results({"model": model}, {"model": state}, info, handle_name="h")
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_through_a_real_coordinator_the_kernel_refuses_and_loads_nothing(
    server: str,  # noqa: F811
    sentinel: pathlib.Path,
) -> None:
    """A provider posts a pickle as its values blob; the kernel's handle refuses it."""
    import httpx

    from gensyn_jupyter.kernel import GensynError
    from gensyn_jupyter.kernel._client import CoordinatorClient
    from gensyn_jupyter.kernel._handle import TaskHandle

    from ..coordinator.coordinator_helpers import bundle_bytes, sha

    with httpx.Client(base_url=server, timeout=30) as http:

        def put(data: bytes) -> str:
            assert http.put(f"/v1/blobs/{sha(data)}", content=data).status_code in (200, 201)
            return sha(data)

        task = http.post("/v1/tasks", json={"bundle": put(bundle_bytes())}).json()
        info = {"name": "evil", "device_type": "cpu", "python": "3.11.7", "torch": "2.13.0"}
        reg = http.post("/v1/providers", json=info).json()
        auth = {"Authorization": f"Bearer {reg['token']}"}
        lease = http.post(
            f"/v1/providers/{reg['provider']['id']}/lease", params={"wait": 10}, headers=auth
        ).json()
        assert lease["task"]["id"] == task["id"]
        manifest = {
            "values": put(_pickle_payloads(sentinel)[1]),
            "tensors": put(_pickle_payloads(sentinel)[3]),
            "outputs": [{"name": "model", "kind": "module_state", "type_name": "torch.nn.Linear"}],
            "duration_s": 1.0,
        }
        posted = http.post(f"/v1/leases/{lease['id']}/result", json=manifest, headers=auth)
        assert posted.status_code == 200 and posted.json()["state"] == "settled", posted.text

    model = torch.nn.Linear(2, 2)
    before = model.weight.clone()
    namespace: dict[str, Any] = {"model": model}
    handle = TaskHandle(
        task_id=task["id"], client=CoordinatorClient(base_url=server), namespace=namespace
    )
    handle.follow()
    with pytest.raises(GensynError) as refused:
        handle.apply()
    message = str(refused.value)
    assert f"task {task['id']}: the result provider evil sent was refused" in message
    assert "results are not valid JSON" in message and "nothing was loaded" in message
    assert namespace["model"] is model and torch.equal(model.weight, before)
