"""One ``%%gensyn_train`` run: capture, upload, submit, follow, load results back."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ..capture import build_bundle, decode_results
from ..protocol import CoordinatorError, Event, Task, TaskSpec, TaskState, sha256_hex
from ._client import CoordinatorClient
from ._errors import GensynError, RemoteTaskError
from ._handle import TrainResult
from ._loading import apply_results

__all__ = ["TrainOptions", "format_bytes", "train_cell"]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """The options of one ``%%gensyn_train`` cell."""

    gpus: int = 1
    verify: str = "none"
    device: str = "auto"
    output: str = "_gensyn"
    max_seconds: int = 3600
    label: str = ""
    cell_line_offset: int = 1


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _on_event(event: Event, handle: TrainResult, say: Callable[[str], None]) -> None:
    data = event.data
    if event.kind == "state":
        handle.status = str(data.get("state", handle.status))
        provider = data.get("provider")
        if isinstance(provider, dict):
            handle.provider = str(provider.get("name"))
            handle.device = str(provider.get("device"))
        if handle.status not in (TaskState.FAILED, TaskState.CANCELLED):
            say(str(data.get("message") or handle.status))
    elif event.kind == "stdout":
        text = str(data.get("text", ""))
        handle.stdout += text
        sys.stdout.write(text)
        sys.stdout.flush()
    elif event.kind == "stderr":
        sys.stderr.write(str(data.get("text", "")))
        sys.stderr.flush()
    elif event.kind == "metrics":
        points = data.get("points", [])
        if isinstance(points, list):
            handle.history.extend(p for p in points if isinstance(p, dict))
    elif event.kind == "log":
        say(str(data.get("message", "")))


def _cancel(client: CoordinatorClient, handle: TrainResult, started: float) -> GensynError:
    try:
        task = client.cancel(handle.task_id)
        handle.status = task.state
    except (CoordinatorError, OSError) as exc:
        return GensynError(
            f"interrupted, but cancelling task {handle.task_id} failed ({exc}); "
            f"cancel it with %gensyn cancel {handle.task_id}"
        )
    where = f" on provider {handle.provider}" if handle.provider else " before any provider took it"
    return GensynError(
        f"interrupted: task {handle.task_id} cancelled after {time.monotonic() - started:.1f} s"
        f"{where}; nothing was paid (this network has no escrow yet) and nothing was loaded"
    )


def _finish(task: Task, handle: TrainResult) -> None:
    handle.status = task.state
    handle.provider = task.provider_name or handle.provider
    if task.state == TaskState.FAILED:
        handle.error = task.error
        if task.result is not None and task.result.error is not None:
            raise RemoteTaskError(
                task_id=task.id, provider=handle.provider, error=task.result.error
            )
        raise GensynError(f"task {task.id} failed: {task.error}")
    if task.state != TaskState.SETTLED or task.result is None:
        raise GensynError(f"task {task.id} ended {task.state}; nothing was loaded into the kernel")


def _warn_if_no_provider_fits(
    client: CoordinatorClient, options: TrainOptions, say: Callable[[str], None]
) -> None:
    online = [p for p in client.list_providers() if p.state != "offline"]
    fits = [
        p
        for p in online
        if options.gpus <= max(1, len(p.info.gpus))
        and (options.device != "cuda" or p.info.device_type == "cuda")
    ]
    if not fits:
        want = f"{options.gpus} GPU(s)" + (" with CUDA" if options.device == "cuda" else "")
        say(
            f"no provider online offers {want} ({len(online)} online); the task waits in the "
            "queue until one joins (interrupt to cancel)"
        )


def train_cell(
    source: str,
    namespace: MutableMapping[str, Any],
    *,
    options: TrainOptions,
    client: CoordinatorClient,
    say: Callable[[str], None],
) -> TrainResult:
    """Run ``source`` on a provider of ``client``'s network and load the results.

    The handle is bound to ``namespace[options.output]`` as soon as the task
    exists, so it can be inspected even when the run fails.
    """
    prepared = build_bundle(
        source,
        namespace,
        cell_line_offset=options.cell_line_offset,
        exclude={options.output},
    )
    bundle_json = prepared.bundle_json()
    bundle_sha = sha256_hex(bundle_json)
    sent = client.blobs.upload_missing({**prepared.blobs, bundle_sha: bundle_json})
    spec = TaskSpec.model_validate(
        {
            "bundle": bundle_sha,
            "gpus": options.gpus,
            "verify": options.verify,
            "device": options.device,
            "max_seconds": options.max_seconds,
            "label": options.label,
        }
    )
    _warn_if_no_provider_fits(client, options, say)
    task = client.create_task(spec)
    started = time.monotonic()
    handle = TrainResult(task_id=task.id, network=client.base_url)
    namespace[options.output] = handle
    say(
        f"task {task.id} submitted to {client.base_url} "
        f"(bundle {format_bytes(prepared.nbytes)}, {format_bytes(sent)} uploaded)"
    )
    try:
        for event in client.events(task.id):
            _on_event(event, handle, say)
    except KeyboardInterrupt:
        raise _cancel(client, handle, started) from None
    task = client.get_task(task.id)
    _finish(task, handle)
    result = task.result
    assert result is not None
    values = client.blobs.get_blob(result.values) if result.values else None
    tensors = client.blobs.get_blob(result.tensors) if result.tensors else None
    decoded = decode_results(values, tensors) if values is not None else {}
    handle.outputs = decoded
    handle.refused = {o.name: o.note for o in result.outputs if o.kind == "refused"}
    handle.duration = result.duration_s
    handle.steps = result.steps
    for note in apply_results(namespace, decoded, result.outputs, handle_name=options.output):
        if "not loaded" in note or "created on the provider" in note:
            say(note)
    summary = f"done in {result.duration_s:.2f} s on {handle.provider} ({result.device})"
    if handle.steps:
        summary += f", {handle.steps} optimizer steps"
    losses = handle.losses
    if losses:
        summary += f", loss {losses[0]:.4g} → {losses[-1]:.4g}"
    say(summary)
    return handle
