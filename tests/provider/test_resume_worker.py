"""A run resumed from another worker's checkpoint ends with the same weights and Merkle root.

The first run (the "lost" provider) announces each checkpoint on its control
pipe; a second worker gets the job again with ``resume`` set to one of those
announcements and the checkpoint files it names, and runs the rest of the cell.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from gensyn_jupyter.capture import build_bundle
from gensyn_jupyter.protocol import CheckpointBlob, CheckpointPost, ResultManifest, sha256_hex
from gensyn_jupyter.verify import CheckpointStore

from ..verify._harness import data, forward_calls

SHUFFLE = """\
losses = []
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=True)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
for epoch in range(3):
    model.train()
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    sched.step()
"""


def _namespace() -> dict[str, Any]:
    ns = dict(data())
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1)
    )
    ns["model"] = model
    ns["opt"] = torch.optim.Adam(model.parameters(), lr=0.01)
    return ns


class _Pipe(io.StringIO):
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


def _run(tmp: Path, blob_dir: Path, bundle: str, resume: CheckpointPost | None) -> _Pipe:
    from gensyn_jupyter.provider._worker import _Control, _run

    workdir = tmp / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    job: dict[str, Any] = {
        "workdir": str(workdir),
        "blob_dir": str(blob_dir),
        "bundle": bundle,
        "device": "cpu",
        "threads": None,
        "task_id": "t-0000000000",
        "checkpoint_dir": str(tmp / "checkpoints"),
    }
    if resume is not None:
        job["resume"] = resume.model_dump(mode="json")
    pipe = _Pipe()
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        _run(job, _Control(pipe))
    finally:
        os.chdir(cwd)
    return pipe


def _manifest(tmp: Path) -> ResultManifest:
    manifest = ResultManifest.model_validate_json((tmp / "work/out/result.json").read_text())
    assert manifest.error is None, manifest.error
    return manifest


def _untupled(value: Any) -> Any:
    """JSON with tuples as lists (a restored optimizer's ``betas`` come back as a list)."""
    if isinstance(value, dict):
        if set(value) == {"$tuple"}:
            return _untupled(value["$tuple"])
        return {k: _untupled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untupled(v) for v in value]
    return value


def _post(message: dict[str, Any]) -> CheckpointPost:
    fake = "0" * 64  # the coordinator's blob shas: not needed by the worker
    blob = CheckpointBlob(
        leaf=message["leaf"], step=message["step"], kind="boundary", meta=fake, tensors=fake
    )
    fields = {k: v for k, v in message.items() if k != "type"}
    return CheckpointPost.model_validate({**fields, "blobs": [blob.model_dump()]})


@pytest.mark.parametrize("every", [4, None])
def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, every: int | None) -> None:
    prepared = build_bundle(SHUFFLE, _namespace())
    prepared.bundle.checkpoint_every = every
    bundle_json = prepared.bundle_json()
    sha = sha256_hex(bundle_json)
    blob_dir = tmp_path / "blobs"
    blob_dir.mkdir()
    for name, blob in {**prepared.blobs, sha: bundle_json}.items():
        (blob_dir / name).write_bytes(blob)

    first = tmp_path / "first"
    with forward_calls() as full:
        pipe = _run(first, blob_dir, sha, None)
    whole = _manifest(first)
    assert whole.commitment is not None
    posts = [m for m in pipe.messages() if m["type"] == "checkpoint"]
    assert len(posts) >= 2
    point = _post(posts[len(posts) // 2])
    assert [leaf.leaf for leaf in point.leaves] == [
        leaf.leaf for leaf in whole.commitment.leaves[: point.leaf + 1]
    ]

    second = tmp_path / "second"
    store = CheckpointStore(second / "checkpoints")
    store.directory.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        name = CheckpointStore.stem(point.step, "boundary") + suffix
        shutil.copy(first / "checkpoints" / name, store.directory / name)
    with forward_calls() as resumed_calls:
        resumed_pipe = _run(second, blob_dir, sha, point)
    resumed = _manifest(second)

    assert resumed.commitment is not None
    assert resumed.commitment.root == whole.commitment.root
    assert resumed.commitment.leaves == whole.commitment.leaves
    assert resumed.steps == whole.steps
    # the steps before the checkpoint were not run again
    assert resumed_calls() == whole.steps - point.step < full()
    tensors = [load_file(str(d / "work/out/tensors.safetensors")) for d in (first, second)]
    assert tensors[0].keys() == tensors[1].keys() and tensors[0]
    for name in tensors[0]:
        assert torch.equal(tensors[0][name], tensors[1][name]), name
    values = [
        _untupled(json.loads((d / "work/out/values.json").read_text())) for d in (first, second)
    ]
    assert values[0] == values[1]  # the losses list too: restored up to the checkpoint
    assert len(values[1]["outputs"]["losses"]["structure"]) == whole.steps
    logs = [m["message"] for m in resumed_pipe.messages() if m["type"] == "log"]
    assert any(f"resuming from the checkpoint at step {point.step}" in m for m in logs)
    later = [m for m in resumed_pipe.messages() if m["type"] == "checkpoint"]
    assert later and all(m["step"] > point.step for m in later)


def test_a_checkpoint_that_does_not_match_its_leaf_is_refused(tmp_path: Path) -> None:
    prepared = build_bundle(SHUFFLE, _namespace())
    prepared.bundle.checkpoint_every = 4
    bundle_json = prepared.bundle_json()
    sha = sha256_hex(bundle_json)
    blob_dir = tmp_path / "blobs"
    blob_dir.mkdir()
    for name, blob in {**prepared.blobs, sha: bundle_json}.items():
        (blob_dir / name).write_bytes(blob)
    pipe = _run(tmp_path / "first", blob_dir, sha, None)
    posts = [m for m in pipe.messages() if m["type"] == "checkpoint"]
    point = _post(posts[0])
    bad = point.model_copy(
        update={
            "leaves": [
                *point.leaves[:-1],
                point.leaves[-1].model_copy(update={"leaf": "0x" + "ab" * 32}),
            ]
        }
    )
    second = tmp_path / "second"
    (second / "checkpoints").mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        name = CheckpointStore.stem(point.step, "boundary") + suffix
        shutil.copy(tmp_path / "first/checkpoints" / name, second / "checkpoints" / name)
    from gensyn_jupyter.verify import CheckpointMismatch

    with pytest.raises(CheckpointMismatch, match="hashes to"):
        _run(second, blob_dir, sha, bad)
