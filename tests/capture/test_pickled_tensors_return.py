"""A tensor an optimizer holds travels in the pickle, and must still come back trained."""

from __future__ import annotations

import torch

from gensyn_jupyter.capture import build_bundle, decode_results, encode_results, load_inputs

CELL = """
for step in range(3):
    loss = ((w - 1.0) ** 2).sum()
    opt.zero_grad(); loss.backward(); opt.step()
"""


def test_a_raw_parameter_held_by_an_optimizer_comes_back_as_data() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    prepared = build_bundle(CELL, {"__name__": "__main__", "w": w, "opt": opt})
    remote = load_inputs(prepared.bundle, prepared.blobs.__getitem__)
    exec(CELL, remote)
    encoded = encode_results(remote, [*prepared.bundle.outputs, *prepared.bundle.returns])
    kinds = {o.name: o.kind for o in encoded.outputs}
    assert kinds["w"] == "tree" and kinds["opt"] == "optimizer_state"
    back = decode_results(encoded.values_json, encoded.tensors)
    assert torch.allclose(back["w"], remote["w"].detach())
    assert not torch.equal(back["w"], torch.zeros(2))
