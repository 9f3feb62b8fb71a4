"""Run one lease: fetch the bundle, drive a warm worker, stream its output, send results."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..protocol import (
    Bundle,
    CheckpointBlob,
    CoordinatorError,
    Lease,
    ProviderInfo,
    RemoteError,
    ResultManifest,
    sha256_hex,
)
from ._checkpoint_upload import CheckpointUploader, fetch_resume
from ._client import ProviderClient
from ._payout import Payout
from ._pool import Worker, WorkerPool
from ._pumps import Outbox as _Outbox
from ._pumps import StderrTail as _Tail
from ._pumps import discard_loop as _discard_loop
from ._pumps import pump_control as _pump_control
from ._pumps import pump_text as _pump_text
from ._sandbox_hints import explain

__all__ = ["TaskRunner"]

_SEND_INTERVAL = 0.1


class TaskRunner:
    """Runs leases one at a time on this provider."""

    def __init__(
        self,
        *,
        client: ProviderClient,
        info: ProviderInfo,
        work_dir: Path,
        pool: WorkerPool,
        threads: int | None,
        log: Callable[[str], None],
    ) -> None:
        self.payout: Payout | None = None
        """Commits paid results on chain (set once the provider signed in)."""
        self.cheat: str | None = None
        """A dishonest provider's mode (tests and the demo only): see ._cheats."""
        self._client = client
        self._info = info
        self._blob_dir = work_dir / "blobs"
        self._task_dir = work_dir / "tasks"
        self._checkpoint_dir = work_dir / "checkpoints"
        """Checkpoints of committed runs, kept for verifiers (one folder per task)."""
        self._blob_dir.mkdir(parents=True, exist_ok=True)
        self._task_dir.mkdir(parents=True, exist_ok=True)
        self._pool = pool
        self._threads = threads
        self._log = log
        self._lock = threading.Lock()
        self._current: tuple[str, Worker] | None = None
        self._cancelled = threading.Event()
        self._abandoned: str | None = None

    # What a verification job (._verifier) uses of this runner.
    @property
    def client(self) -> ProviderClient:
        return self._client

    @property
    def pool(self) -> WorkerPool:
        return self._pool

    @property
    def blob_dir(self) -> Path:
        return self._blob_dir

    @property
    def task_dir(self) -> Path:
        return self._task_dir

    @property
    def threads(self) -> int | None:
        return self._threads

    def prepare(self, lease: Lease) -> Bundle:
        """Fetch the lease's bundle and its blobs into the cache."""
        return self._prepare(lease)

    def device_for(self, lease: Lease) -> str:
        return self._device(lease)

    def cancel(self, task_id: str) -> None:
        """Stop the worker if it runs ``task_id`` (the owner cancelled it)."""
        with self._lock:
            current = self._current
        if current is not None and current[0] == task_id:
            self._cancelled.set()
            current[1].kill()

    def abandon_current(self, reason: str) -> None:
        """Stop the running task and post ``reason`` as its error (the provider shuts down)."""
        with self._lock:
            if self._current is not None:
                self._abandoned = reason
                self._current[1].kill()

    def kill_current(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current[1].kill()

    def _fetch(self, sha: str) -> bytes | None:
        path = self._blob_dir / sha
        if path.exists():
            return None
        data = self._client.blobs.get_blob(sha)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return data

    def _prepare(self, lease: Lease) -> Bundle:
        self._fetch(lease.task.spec.bundle)
        bundle = Bundle.model_validate_json((self._blob_dir / lease.task.spec.bundle).read_bytes())
        for sha in sorted(bundle.blobs()):
            self._fetch(sha)
        return bundle

    def _device(self, lease: Lease) -> str:
        if self._info.device_type == "cuda" and lease.task.spec.device != "cpu":
            return "cuda:0"
        return "cpu"

    def run(self, lease: Lease) -> None:
        """Run the lease's task to its end and post its result (or nothing if cancelled)."""
        if lease.job is not None and lease.job.kind != "replica":
            from ._verifier import run_verification

            run_verification(self, lease, self._log)
            return
        # a replica job runs the task itself, quietly: its events are not the user's
        replica = lease.job is not None
        task = lease.task
        self._cancelled.clear()
        outbox = _Outbox()
        workdir = self._task_dir / task.id
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(self._checkpoint_dir / task.id, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            self._prepare(lease)
            if lease.resume is not None:  # an earlier provider was lost: its checkpoints
                fetch_resume(self._client, lease.resume, self._checkpoint_dir / task.id)
        except (CoordinatorError, ValueError, OSError) as exc:
            self._post_result(
                lease,
                ResultManifest(
                    error=RemoteError(
                        type=type(exc).__name__, message=f"bundle fetch failed: {exc}"
                    )
                ),
            )
            return
        worker = self._pool.take()
        with self._lock:
            self._current = (task.id, worker)
        stderr_tail = _Tail()
        uploader = None  # runs post each checkpoint: they resume elsewhere if this dies
        payout = self.payout
        if not replica and (task.payment is None or payout is not None):
            known = lease.resume.blobs if lease.resume is not None else []
            directory = self._checkpoint_dir / task.id
            claim = None
            if payout is not None and task.payment is not None:
                claim = functools.partial(payout.claim, lease)  # signed progress, for a handover
            uploader = CheckpointUploader(
                self._client, lease, directory, self._log, known, claim=claim
            )
        pumps = [
            threading.Thread(target=_pump_text, args=(worker.proc.stdout, "stdout", outbox, None)),
            threading.Thread(
                target=_pump_text, args=(worker.proc.stderr, "stderr", outbox, stderr_tail.add)
            ),
            threading.Thread(
                target=_pump_control,
                args=(worker.control, outbox, uploader.offer if uploader else None),
            ),
        ]
        for pump in pumps:
            pump.daemon = True
            pump.start()
        device = self._device(lease)
        worker.start_job(
            {
                "workdir": str(workdir),
                "blob_dir": str(self._blob_dir),
                "bundle": task.spec.bundle,
                "device": device,
                "threads": self._threads,
                "gpus": task.spec.gpus,
                "task_id": task.id,
                "checkpoint_dir": str(self._checkpoint_dir / task.id),
                "cheat": self.cheat,
                "resume": lease.resume.model_dump(mode="json") if lease.resume else None,
            }
        )
        self._log(f"running {task.id} on {device} (worker pid {worker.proc.pid})")
        started = time.monotonic()
        done = threading.Event()
        sender = threading.Thread(
            target=_discard_loop if replica else self._send_loop,
            args=(outbox, done) if replica else (lease, outbox, done, worker),
        )
        sender.daemon = True
        sender.start()
        timed_out = False
        try:
            worker.proc.wait(timeout=task.spec.max_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            worker.kill()
            worker.proc.wait()
        for pump in pumps:
            pump.join(timeout=10)
        if uploader is not None:
            uploader.close()
        done.set()
        sender.join(timeout=30)
        with self._lock:
            self._current = None
        try:
            if self._abandoned is not None:
                reason, self._abandoned = self._abandoned, None
                error = RemoteError(type="ProviderShutdown", message=reason)
                self._post_result(lease, ResultManifest(error=error, device=device))
                return
            if self._cancelled.is_set():
                self._log(f"{task.id} was cancelled; worker stopped")
                if self.payout is not None and task.payment is not None:
                    spent = time.monotonic() - started
                    self.payout.commit(lease, ResultManifest(duration_s=spent, device=device))
                return
            try:
                manifest = self._collect(
                    workdir, worker, stderr_tail.text, timed_out, task.spec.max_seconds
                )
            except CoordinatorError as exc:  # e.g. 507: the coordinator's disk is full
                message = f"the provider could not upload the result: {exc.detail}"
                manifest = ResultManifest(
                    error=RemoteError(type="ResultUploadFailed", message=message)
                )
            manifest.device = device
            if manifest.error is not None:  # say which sandbox limit stopped the cell, if one did
                manifest.error = explain(manifest.error, self._pool.sandbox)
            if task.spec.verify != "none" and manifest.commitment is not None:
                manifest.checkpoints = self._upload_checkpoints(task.id, manifest)
            self._post_result(lease, manifest)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            # Warm the next worker only now, so its torch import does not slow the result.
            self._pool.replenish()

    def _send_loop(
        self, lease: Lease, outbox: _Outbox, done: threading.Event, worker: Worker
    ) -> None:
        last_send = 0.0
        while True:
            # Send as soon as something arrives, at most every _SEND_INTERVAL.
            outbox.ready.wait(0.05)
            wait = _SEND_INTERVAL - (time.monotonic() - last_send)
            if wait > 0:
                done.wait(wait)
            finished = done.is_set()
            events = outbox.drain()
            if events:
                last_send = time.monotonic()
                try:
                    reply = self._client.post_events(lease.id, events)
                except CoordinatorError as exc:
                    self._log(f"events for {lease.task.id} refused: {exc.detail}")
                    if exc.status == 409:
                        self._cancelled.set()
                        worker.kill()
                except Exception as exc:  # network flap: keep the events for the next try
                    self._log(f"could not post events: {exc}")
                    outbox.requeue(events)
                else:
                    if reply.cancelled:
                        self._cancelled.set()
                        worker.kill()
            if finished and not events:
                return

    def _collect(
        self, workdir: Path, worker: Worker, stderr: str, timed_out: bool, max_seconds: int
    ) -> ResultManifest:
        out = workdir / "out"
        result = out / "result.json"
        if timed_out:
            return ResultManifest(
                error=RemoteError(
                    type="TimeoutError",
                    message=f"the cell ran past its limit of {max_seconds} s and was stopped",
                )
            )
        if not result.exists():
            code = worker.proc.returncode or 0  # it has exited: never None here
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            detail = f"; last output: {stderr.strip()[-500:]}" if stderr.strip() else ""
            return ResultManifest(
                error=RemoteError(
                    type="WorkerDied", message=f"the worker process {how} before finishing{detail}"
                )
            )
        try:  # written by the cell's process: it may be anything
            manifest = ResultManifest.model_validate_json(result.read_bytes())
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return ResultManifest(
                error=RemoteError(
                    type="WorkerDied",
                    message=f"the worker left an unreadable result ({exc.__class__.__name__}): "
                    "its process was disturbed by the cell (several processes writing it?)",
                )
            )
        for name, field in (("values.json", "values"), ("tensors.safetensors", "tensors")):
            path = out / name
            if path.exists():
                data = path.read_bytes()
                sha = sha256_hex(data)
                self._client.blobs.upload_missing({sha: data})
                setattr(manifest, field, sha)
        return manifest

    def _upload_checkpoints(self, task_id: str, manifest: ResultManifest) -> list[CheckpointBlob]:
        """Upload the committed checkpoints (verifiers replay from them); the list of blobs."""
        from ..verify import CheckpointStore

        assert manifest.commitment is not None
        directory = self._checkpoint_dir / task_id
        uploaded: list[CheckpointBlob] = []
        for index, leaf in enumerate(manifest.commitment.leaves):
            stem = directory / CheckpointStore.stem(leaf.step, leaf.kind)
            meta, tensors = Path(str(stem) + ".json"), Path(str(stem) + ".safetensors")
            if index == 0 or not (meta.exists() and tensors.exists()):
                continue  # leaf 0 is the bundle itself; "hook" leaves are not resumable
            meta_bytes, tensor_bytes = meta.read_bytes(), tensors.read_bytes()
            meta_sha, tensors_sha = sha256_hex(meta_bytes), sha256_hex(tensor_bytes)
            self._client.blobs.upload_missing({meta_sha: meta_bytes, tensors_sha: tensor_bytes})
            uploaded.append(
                CheckpointBlob(
                    leaf=index, step=leaf.step, kind=leaf.kind, meta=meta_sha, tensors=tensors_sha
                )
            )
        return uploaded

    def _post_result(self, lease: Lease, manifest: ResultManifest) -> None:
        if self.payout is not None and lease.task.payment is not None:
            manifest.commit_tx = self.payout.commit(lease, manifest)
        try:
            if lease.job is not None:  # the second run of a replicated task
                self._client.post_replica(lease.id, manifest)
                self._log(f"replica of {lease.task.id} posted")
                return
            self._client.post_result(lease.id, manifest)
        except CoordinatorError as exc:
            self._log(f"result for {lease.task.id} refused: {exc.detail}")
        else:
            state = "failed" if manifest.error else "done"
            self._log(
                f"{lease.task.id} {state} in {manifest.duration_s:.2f} s, {manifest.steps} steps"
            )
