"""The task handle a ``%%gensyn_train`` cell leaves in ``_gensyn`` (or ``-o NAME``).

It follows the task's event stream in a background thread (the live view is
fed from there), and works like a future: ``done()``, ``result(timeout=)``,
``cancel()``, ``await handle``. Results reach the kernel's namespace only
through ``apply()``, never behind the user's back while other cells run.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from array import array
from collections.abc import Callable, Generator, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import (
    CoordinatorError,
    Event,
    Payment,
    Receipt,
    Task,
    TaskState,
    TxRef,
    Verification,
)
from ._client import CoordinatorClient

if TYPE_CHECKING:
    from ..verify import ReturnCheck
from ._errors import GensynError, RemoteTaskError

__all__ = ["TaskHandle", "View"]


class View(Protocol):
    """What shows a task's progress: the widget, or a text line."""

    def set_status(
        self,
        *,
        state: str,
        message: str,
        ts: float,
        provider: str | None = None,
        device: str | None = None,
    ) -> None: ...

    def add_points(self, points: list[dict[str, Any]]) -> None: ...

    def add_log(self, text: str, *, stream: str = "stdout") -> None: ...

    def set_progress(
        self, *, steps: int, total_steps: int | None, elapsed: float, gpu_seconds: float
    ) -> None: ...

    def finish(self, *, state: str, summary: dict[str, Any]) -> None: ...


class TaskHandle:
    """One remote training task, followed live.

    Attributes
    ----------
    task_id, network
        Which task, on which coordinator.
    status, provider, device
        Its last known state and who runs it.
    duration, steps
        Seconds the cell ran on the provider and optimizer steps, once done.
    gpu_peak_bytes
        On a CUDA provider, the peak GPU memory the cell's tensors took (None elsewhere).
    outputs, refused
        What came back (decoded from safetensors + JSON) and what could not.
    stdout
        Everything the cell printed on the provider.
    """

    def __init__(
        self,
        *,
        task_id: str,
        client: CoordinatorClient,
        namespace: MutableMapping[str, Any] | None = None,
        output: str = "_gensyn",
        view: View | None = None,
        echo: bool = False,
    ) -> None:
        self.task_id = task_id
        self.network = client.base_url
        self.status: str = TaskState.QUEUED
        self.provider: str | None = None
        self.device: str | None = None
        self.duration: float | None = None
        self.gpu_peak_bytes: int | None = None
        self.steps = 0
        self.outputs: dict[str, Any] = {}
        self.refused: dict[str, str] = {}
        self.error: str | None = None
        self.stdout = ""
        self._client = client
        self._namespace = namespace
        self._output = output
        self._view = view
        # arrays, not lists: a million points stay 16 MB, and no small objects
        # live on among the transient ones of event parsing (the heap can shrink)
        self._series: dict[str, tuple[array[int], array[float]]] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._echo: queue.SimpleQueue[tuple[str, str]] | None = (
            queue.SimpleQueue() if echo else None
        )
        self._started = time.monotonic()
        self._running_since: float | None = None
        self._follow_error: BaseException | None = None
        self._task: Task | None = None
        self._applied: list[str] | None = None
        self._thread: threading.Thread | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.commitment_check: ReturnCheck | None = None
        """The provider's commitment checked against the loaded weights (after apply())."""

    # -- following -------------------------------------------------------
    def follow(self, *, after: int = 0) -> None:
        """Start reading the task's events (from ``after``) in a background thread."""
        self._thread = threading.Thread(
            target=self._run, args=(after,), name=f"gensyn-follow-{self.task_id}", daemon=True
        )
        self._thread.start()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in the follower thread once the task has ended."""
        self._callbacks.append(callback)

    def _run(self, after: int) -> None:
        try:
            for event in self._client.events(self.task_id, after=after):
                self._process(event)
        except BaseException as exc:  # surfaced by wait()/result(), never lost
            self._follow_error = exc
        finally:
            self._done.set()
            for callback in self._callbacks:
                with contextlib.suppress(Exception):
                    callback()

    def _say(self, kind: str, text: str) -> None:
        if self._echo is not None:
            self._echo.put((kind, text))

    def _process(self, event: Event) -> None:
        data = event.data
        view = self._view
        if event.kind == "state":
            self.status = str(data.get("state", self.status))
            provider = data.get("provider")
            if isinstance(provider, dict):
                self.provider = str(provider.get("name"))
                self.device = str(provider.get("device"))
            if self.status == TaskState.RUNNING:
                self._running_since = time.monotonic()
            message = str(data.get("message") or self.status)
            if self.status not in (TaskState.FAILED, TaskState.CANCELLED):
                self._say("gensyn", message)
            if view is not None:
                view.set_status(
                    state=self.status,
                    message=message,
                    ts=event.ts,
                    provider=self.provider,
                    device=self.device,
                )
        elif event.kind in ("stdout", "stderr"):
            text = str(data.get("text", ""))
            if event.kind == "stdout":
                self.stdout += text
            self._say(event.kind, text)
            if view is not None:
                view.add_log(text, stream=event.kind)
        elif event.kind == "metrics":
            points = [_ranked(p) for p in data.get("points", []) if isinstance(p, dict)]
            with self._lock:
                for point in points:
                    steps, values = self._series.setdefault(
                        str(point["name"]), (array("q"), array("d"))
                    )
                    steps.append(int(point["step"]))
                    values.append(float(point["value"]))
                self.steps = max([self.steps, *(int(p["step"]) for p in points)])
            if view is not None:
                view.add_points(points)
                running = time.monotonic() - (self._running_since or self._started)
                view.set_progress(
                    steps=self.steps, total_steps=None, elapsed=running, gpu_seconds=running
                )
        elif event.kind == "log":
            message = str(data.get("message", ""))
            self._say("gensyn", message)
            if view is not None:
                view.add_log(f"[gensyn] {message}\n", stream="stdout")

    def drain_echo(self, write: Any) -> None:
        """Hand what the follower wants printed to ``write(kind, text)`` (main thread)."""
        if self._echo is None:
            return
        while True:
            try:
                kind, text = self._echo.get_nowait()
            except queue.Empty:
                return
            write(kind, text)

    # -- history ---------------------------------------------------------
    def metric(self, name: str = "loss") -> tuple[list[int], list[float]]:
        """Steps and values of one metric, in the order they arrived."""
        with self._lock:
            series = self._series.get(name)
            return (list(series[0]), list(series[1])) if series else ([], [])

    @property
    def metrics(self) -> list[str]:
        with self._lock:
            return sorted(self._series)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every metric point: ``{"step", "name", "value"}``."""
        with self._lock:
            return [
                {"step": s, "name": name, "value": v}
                for name, (steps, values) in self._series.items()
                for s, v in zip(steps, values, strict=True)
            ]

    @property
    def losses(self) -> list[float]:
        """The loss of every optimizer step, in order."""
        return self.metric("loss")[1]

    # -- future-like -----------------------------------------------------
    def done(self) -> bool:
        """True once the task reached a final state (or its stream broke for good)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None, *, on_tick: Any = None) -> bool:
        """Block until done (Ctrl-C raises KeyboardInterrupt at once); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.05):
            if on_tick is not None:
                on_tick()
            if deadline is not None and time.monotonic() >= deadline:
                return False
        if on_tick is not None:
            on_tick()
        return True

    def _final_task(self) -> Task:
        if self._task is None:
            if self._follow_error is not None and not isinstance(
                self._follow_error, CoordinatorError
            ):
                raise self._follow_error
            task = self._client.get_task(self.task_id)
            if not task.state.terminal:  # the stream broke for good; the task goes on
                why = f" ({self._follow_error})" if self._follow_error is not None else ""
                raise GensynError(
                    f"lost the event stream of task {task.id}{why}; it is still {task.state}: "
                    f"%gensyn attach {task.id} follows it again"
                )
            self._task = task
        return self._task

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task and return what came back, by name (not yet applied).

        Raises
        ------
        TimeoutError
            When the task is not done within ``timeout`` seconds.
        RemoteTaskError
            When the cell raised on the provider (with its traceback).
        GensynError
            When the task failed otherwise, or was cancelled.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.task_id} is still {self.status} after {timeout} s")
        task = self._final_task()
        self.status = task.state
        self.provider = task.provider_name or self.provider
        if task.state == TaskState.FAILED:
            self.error = task.error
            if task.result is not None and task.result.error is not None:
                raise RemoteTaskError(
                    task_id=task.id, provider=self.provider, error=task.result.error
                )
            raise GensynError(f"task {task.id} failed: {task.error}")
        if task.state == TaskState.CANCELLED:
            if task.payment is None:
                paid = "; nothing was paid (this network has no escrow)"
            elif not task.payment.funded:
                paid = "; nothing was paid (its escrow was never funded)"
            elif task.provider_name is None:
                paid = "; its escrow is refunded in full (no provider had started it)"
            else:
                paid = (
                    "; the provider is paid for the time it ran and the rest of the escrow is "
                    "refunded when the chain settles (handle.payment)"
                )
            raise GensynError(
                f"task {task.id} was cancelled after {self.steps} steps"
                + (f" on provider {self.provider}" if self.provider else "")
                + paid
                + " and nothing was loaded"
            )
        if task.state == TaskState.SLASHED:
            raise GensynError(
                f"task {task.id}: the provider {self.provider} was caught cheating "
                f"({_last_message(task)}); nothing was loaded, and your escrow is refunded "
                "(handle.payment, handle.verification)"
            )
        if task.state != TaskState.SETTLED or task.result is None:
            raise GensynError(f"task {task.id} ended {task.state}; there is nothing to load")
        if not self.outputs and (task.result.values or task.result.tensors):
            from ..capture import decode_results

            result = task.result
            values = self._client.blobs.get_blob(result.values) if result.values else None
            tensors = self._client.blobs.get_blob(result.tensors) if result.tensors else None
            try:
                self.outputs = decode_results(values, tensors) if values is not None else {}
            except ValueError as exc:
                raise GensynError(
                    f"task {task.id}: the result provider {self.provider} sent was refused "
                    f"({exc}); nothing was loaded (results come back as JSON and safetensors "
                    "only, never unpickled)"
                ) from exc
            self.refused = {o.name: o.note for o in result.outputs if o.kind == "refused"}
        self.duration = task.result.duration_s
        self.steps = max(self.steps, task.result.steps)
        self.device = task.result.device
        self.gpu_peak_bytes = task.result.gpu_peak_bytes
        return self.outputs

    def receipt(self) -> Receipt | None:
        """The task's receipt (hashes, root, verdicts, transactions); None before a result."""
        from ._receipt import build_receipt

        return build_receipt(self._final_task(), self._client)

    def save_receipt(self, path: str) -> None:
        """Write the receipt as JSON, for ``gensyn verify PATH``."""
        receipt = self.receipt()
        if receipt is None:
            raise GensynError(f"task {self.task_id} has no result yet, so no receipt")
        with open(path, "w", encoding="utf-8") as out:
            out.write(receipt.model_dump_json(indent=2))

    @property
    def verification(self) -> Verification | None:
        """Spot checks: the sampled segments, the verifiers' verdicts and any ruling."""
        task = self._task
        if task is None or (
            task.verification is not None and task.verification.outcome == "pending"
        ):
            with contextlib.suppress(Exception):
                task = self._client.get_task(self.task_id)
        return task.verification if task is not None else None

    @property
    def payment(self) -> Payment | None:
        """The escrow of a paid task as the coordinator last read it (None on a free network)."""
        task = self._task
        if task is None or task.payment is None or task.payment.outcome is None:
            with contextlib.suppress(Exception):
                task = self._client.get_task(self.task_id)
        return task.payment if task is not None else None

    @property
    def transactions(self) -> list[TxRef]:
        """The on-chain transactions of a paid task: fund, assign, commit, finalize..."""
        payment = self.payment
        return list(payment.transactions) if payment is not None else []

    def apply(self, namespace: MutableMapping[str, Any] | None = None) -> list[str]:
        """Load the results into the namespace (once): modules and optimizers in place."""
        from ._loading import apply_results

        self.result()
        if self._applied is not None:
            return self._applied
        target = namespace if namespace is not None else self._namespace
        if target is None:
            raise GensynError("apply() needs a namespace: handle.apply(globals())")
        task = self._final_task()
        assert task.result is not None
        self._applied = apply_results(
            target, self.outputs, task.result.outputs, handle_name=self._output
        )
        commitment = task.result.commitment
        if commitment is not None:
            from ..verify import check_returned

            self.commitment_check = check_returned(commitment, target)
        return self._applied

    def cancel(self) -> bool:
        """Cancel the task; True when it is now cancelled."""
        try:
            task = self._client.cancel(self.task_id)
        except CoordinatorError as exc:
            if exc.status == 409:
                return False
            raise
        self.status = task.state
        return task.state == TaskState.CANCELLED

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return asyncio.get_running_loop().run_in_executor(None, self.result).__await__()

    def summary(self) -> dict[str, Any]:
        losses = self.losses
        return {
            "task_id": self.task_id,
            "state": self.status,
            "provider": self.provider,
            "device": self.device,
            "steps": self.steps,
            "duration_s": self.duration,
            "gpu_seconds": self.duration,
            "gpu_peak_bytes": self.gpu_peak_bytes,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            **self._payment_summary(),
        }

    def _payment_summary(self) -> dict[str, Any]:
        task = self._task
        payment = task.payment if task is not None else None
        if payment is None:
            return {}
        settled = payment.outcome is not None
        return {
            "escrow_wei": payment.order.total_wei,
            "provider_paid_wei": payment.provider_paid_wei if settled else None,
            "refunded_wei": payment.refunded_wei if settled else None,
            "transactions": [t.model_dump() for t in payment.transactions],
        }

    def __repr__(self) -> str:
        parts = [f"gensyn task {self.task_id}: {self.status}"]
        if self.provider:
            parts.append(f"on {self.provider}")
        if self.steps:
            parts.append(f"{self.steps} steps")
        if self.duration is not None:
            parts.append(f"{self.duration:.2f} s")
        losses = self.losses
        if losses:
            parts.append(f"loss {losses[0]:.4g} → {losses[-1]:.4g}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "<" + ", ".join(parts) + ">"


def _last_message(task: Task) -> str:
    """What the verification found, in a few words, for a slashed task."""
    verification = task.verification
    if verification is None:
        return "fraud proven on chain"
    bad = [k for k, v in verification.verdicts.items() if not v.matches]
    where = f"segment {bad[0]} did not reproduce on a verifier" if bad else "fraud proven"
    if verification.ruling is not None:
        where += "; the referee re-executed it and ruled fraud"
    return where


def _ranked(point: dict[str, Any]) -> dict[str, Any]:
    """A point of rank R > 0 (``--gpus N``) goes to its own series, ``loss (rank R)``."""
    rank = point.get("rank")
    if not rank:
        return point
    return {**point, "name": f"{point['name']} (rank {rank})"}
