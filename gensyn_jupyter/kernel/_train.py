"""One ``%%gensyn_train`` run: capture, upload, submit, follow live, load results back."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ..capture import build_bundle
from ..protocol import CoordinatorError, TaskSpec, TaskState, sha256_hex
from ._client import CoordinatorClient
from ._errors import GensynError
from ._handle import TaskHandle, View

__all__ = ["TrainOptions", "attach_task", "format_bytes", "train_cell"]

_CANCEL_ACK_SECONDS = 5.0


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
    run_async: bool = False
    checkpoint_every: int | None = None
    """Steps between committed checkpoints; None: the provider chooses; 0: none."""
    notebook: str = ""
    """The notebook the cell is in (see ``_origin``); empty when unknown."""
    cell_id: str = ""
    """The cell's nbformat id; empty when unknown."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _Display:
    """The live view of a task and the output it is drawn in."""

    def __init__(self, view: View | None, handle: Any = None, *, writes_text: bool = False) -> None:
        self.view = view
        self._handle = handle
        # A text progress line writes the remote output itself; nothing to echo twice.
        self.writes_text = writes_text

    def finish(self, task: TaskHandle) -> None:
        if self.view is None:
            return
        self.view.finish(state=task.status, summary=task.summary())
        if self._handle is not None:
            self._handle.update(self.view)  # the saved output now holds the final snapshot


def _open_view(task_id: str, network: str, *, background: bool) -> _Display:
    """The widget in a Jupyter kernel, a text line in plain IPython (``$GENSYN_PROGRESS``)."""
    mode = os.environ.get("GENSYN_PROGRESS", "auto")
    if mode == "none":
        return _Display(None)
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    in_kernel = shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    if mode == "widget" or (mode == "auto" and in_kernel):
        from IPython.display import display

        from ..widgets import TrainingMonitor

        monitor = TrainingMonitor(task_id=task_id, network=network)
        shown = display(monitor, display_id=True)  # type: ignore[no-untyped-call]
        return _Display(monitor, shown)
    if background:
        return _Display(None)  # a text line would scribble over the prompt
    from ..widgets import TextProgress

    return _Display(TextProgress(stream=sys.stdout), writes_text=True)


def _warn_if_no_provider_fits(
    client: CoordinatorClient, options: TrainOptions, say: Callable[[str], None]
) -> None:
    online = [p for p in client.list_providers() if p.state != "offline"]
    fits = [
        p
        for p in online
        if options.gpus <= p.info.slots(options.device)
        and (options.device != "cuda" or p.info.device_type == "cuda")
    ]
    if not fits:
        want = f"{options.gpus} GPU(s)" + (" with CUDA" if options.device == "cuda" else "")
        say(
            f"no provider online offers {want} ({len(online)} online); the task waits in the "
            "queue until one joins (interrupt to cancel)"
        )


def _write(kind: str, text: str) -> None:
    if kind == "gensyn":
        print(f"[gensyn] {text}", flush=True)
    else:
        stream = sys.stderr if kind == "stderr" else sys.stdout
        stream.write(text)
        stream.flush()


def _interrupted(handle: TaskHandle) -> GensynError:
    ran = time.monotonic() - handle._started
    try:
        cancelled = handle.cancel()
    except (CoordinatorError, OSError) as exc:
        return GensynError(
            f"interrupted, but cancelling task {handle.task_id} failed ({exc}); "
            f"cancel it with %gensyn cancel {handle.task_id}"
        )
    if not cancelled:
        return GensynError(f"interrupted after task {handle.task_id} had already ended")
    handle.wait(_CANCEL_ACK_SECONDS)  # the stream ends with the 'cancelled' state
    where = f" on provider {handle.provider}" if handle.provider else " before any provider took it"
    return GensynError(
        f"interrupted: task {handle.task_id} cancelled after {ran:.1f} s{where}, "
        f"{handle.steps} steps done; nothing was paid (this network has no escrow yet) "
        "and nothing was loaded"
    )


def _run_to_end(
    handle: TaskHandle,
    display: _Display,
    namespace: MutableMapping[str, Any],
    say: Callable[[str], None],
) -> TaskHandle:
    try:
        handle.wait(on_tick=lambda: handle.drain_echo(_write))
    except KeyboardInterrupt:
        raise _interrupted(handle) from None
    try:
        handle.result()
    except GensynError:
        if handle.status == TaskState.SLASHED:
            _receipt(handle, say)  # the evidence of the fraud
        raise
    finally:
        display.finish(handle)
    for note in handle.apply(namespace):
        if "not loaded" in note or "created on the provider" in note:
            say(note)
    summary = f"done in {handle.duration or 0:.2f} s on {handle.provider} ({handle.device})"
    if handle.steps:
        summary += f", {handle.steps} optimizer steps"
    losses = handle.losses
    if losses:
        summary += f", loss {losses[0]:.4g} → {losses[-1]:.4g}"
    if handle.gpu_peak_bytes is not None:
        summary += f", peak GPU memory {handle.gpu_peak_bytes / 2**20:.0f} MiB"
    say(summary)
    if handle.commitment_check is not None:
        say(handle.commitment_check.describe())
    _receipt(handle, say)
    return handle


def _receipt(handle: TaskHandle, say: Callable[[str], None]) -> None:
    """Show a verified task's receipt (and keep it in the output's metadata)."""
    from ._receipt import describe, show_receipt

    task = handle._final_task()
    if task.verification is None:  # verify none: handle.receipt() still has one
        return
    receipt = handle.receipt()
    if receipt is not None and not show_receipt(receipt):
        say(describe(receipt))


def train_cell(
    source: str,
    namespace: MutableMapping[str, Any],
    *,
    options: TrainOptions,
    client: CoordinatorClient,
    say: Callable[[str], None],
) -> TaskHandle:
    """Run ``source`` on a provider of ``client``'s network.

    Blocks until the task ends and loads the results (modules and optimizers
    in place), unless ``options.run_async``: then the handle comes back at
    once and ``handle.apply()`` loads the results when the user asks. The
    handle is bound to ``namespace[options.output]`` as soon as the task
    exists, so it can be inspected even when the run fails.
    """
    prepared = build_bundle(
        source,
        namespace,
        cell_line_offset=options.cell_line_offset,
        exclude={options.output},
    )
    # In the bundle, not the spec: a verifier replaying the task needs it with the cell.
    prepared.bundle.checkpoint_every = options.checkpoint_every
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
            "notebook": options.notebook,
            "cell_id": options.cell_id,
            "bundle_bytes": prepared.nbytes,
        }
    )
    _warn_if_no_provider_fits(client, options, say)
    task = client.create_task(spec)
    say(
        f"task {task.id} submitted to {client.base_url} "
        f"(bundle {format_bytes(prepared.nbytes)}, {format_bytes(sent)} uploaded)"
    )
    display = _open_view(task.id, client.base_url, background=options.run_async)
    handle = TaskHandle(
        task_id=task.id,
        client=client,
        namespace=namespace,
        output=options.output,
        view=display.view,
        echo=not options.run_async and not display.writes_text,
    )
    namespace[options.output] = handle
    if options.run_async:
        handle.on_done(lambda: _finish_quietly(handle, display))
    handle.follow()
    if options.run_async:
        say(
            f"running in the background as {options.output}: {options.output}.result() waits, "
            f"{options.output}.apply() loads the results into this kernel"
        )
        return handle
    return _run_to_end(handle, display, namespace, say)


def attach_task(
    task_id: str,
    namespace: MutableMapping[str, Any],
    *,
    client: CoordinatorClient,
    output: str,
    wait: bool,
    say: Callable[[str], None],
) -> TaskHandle:
    """Find a task again (after a kernel restart): redraw its history, follow it live."""
    task = client.get_task(task_id)
    display = _open_view(task.id, client.base_url, background=not wait)
    handle = TaskHandle(
        task_id=task.id,
        client=client,
        namespace=namespace,
        output=output,
        view=display.view,
        echo=wait and not display.writes_text,
    )
    namespace[output] = handle
    handle.follow(after=0)
    say(f"attached to task {task.id} ({task.state}) as {output}")
    if wait:
        return _run_to_end(handle, display, namespace, say)
    handle.on_done(lambda: _finish_quietly(handle, display))
    return handle


def _finish_quietly(handle: TaskHandle, display: _Display) -> None:
    """Final state of the view of a task that ends while nobody waits on it."""
    with contextlib.suppress(GensynError, CoordinatorError):
        handle.result()
    if display.view is not None:
        display.view.finish(state=handle.status, summary=handle.summary())
