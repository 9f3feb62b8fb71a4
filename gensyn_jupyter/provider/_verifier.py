"""A provider's verification work: replay a segment of someone else's run and answer.

A ``spot`` job checks one sampled segment: the checkpoint of its first leaf
is fetched through the coordinator, the cell is replayed in a fresh worker
(the same sandbox as any cell) to the next leaf, and the verdict is signed
with the provider's key. On a mismatch the verifier challenges the task on
chain first (its bond backs the claim). A ``referee`` job is the same replay
done by the market's referee, who then rules on chain with ``resolve``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from eth_account.messages import encode_defunct

from ..chain import MarketError
from ..protocol import CoordinatorError, Lease, Verdict, VerifyJob, verdict_message

if TYPE_CHECKING:
    from ._runner import TaskRunner

__all__ = ["JOB_SECONDS", "fetch_checkpoint", "run_verification"]

JOB_SECONDS = 240
"""The longest a replay may take before its verdict says so."""


def fetch_checkpoint(runner: TaskRunner, lease: Lease, directory: Path) -> None:
    """Download the job's starting checkpoint into ``directory`` as the store names it."""
    from ..verify import CheckpointStore

    job = lease.job
    assert job is not None
    directory.mkdir(parents=True, exist_ok=True)
    blob = job.checkpoint
    if blob is None:
        return
    stem = directory / CheckpointStore.stem(blob.step, blob.kind)
    for sha, suffix in ((blob.meta, ".json"), (blob.tensors, ".safetensors")):
        Path(str(stem) + suffix).write_bytes(runner.client.blobs.get_blob(sha))


def _replay(runner: TaskRunner, lease: Lease, workdir: Path) -> Verdict:
    job = lease.job
    assert job is not None
    store = workdir / "checkpoint"
    fetch_checkpoint(runner, lease, store)
    runner.prepare(lease)
    worker = runner.pool.take()
    tail: list[bytes] = []
    drains = [
        threading.Thread(target=_drain, args=(stream, keep), daemon=True)
        for stream, keep in (
            (worker.proc.stdout, None),
            (worker.proc.stderr, tail),
            (worker.control, None),
        )
    ]
    for drain in drains:
        drain.start()
    try:
        worker.start_job(
            {
                "kind": "replay",
                "workdir": str(workdir),
                "blob_dir": str(runner.blob_dir),
                "bundle": lease.task.spec.bundle,
                "device": runner.device_for(lease),
                "threads": runner.threads,
                "task_id": lease.task.id,
                "checkpoint_dir": str(store),
                "job": job.model_dump(mode="json"),
            }
        )
        try:
            worker.proc.wait(timeout=JOB_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.proc.wait()
            return Verdict(matches=False, note=f"the replay ran past {JOB_SECONDS} s")
    finally:
        runner.pool.replenish()
    for drain in drains:
        drain.join(timeout=5)
    path = workdir / "out" / "verdict.json"
    if not path.exists():
        stderr = b"".join(tail).decode(errors="replace")[-500:].strip()
        return Verdict(matches=False, note=f"the replay worker died: {stderr}")
    return Verdict.model_validate(json.loads(path.read_text()))


def _drain(stream: IO[bytes] | None, keep: list[bytes] | None) -> None:
    """Read a worker's pipe to its end (a full pipe would stall the replay)."""
    if stream is None:
        return
    for line in iter(stream.readline, b""):
        if keep is not None:
            keep.append(line)
            del keep[:-50]


def _cheater(job: VerifyJob, verdict: Verdict) -> str | None:
    """Whom the referee's replay proves wrong (None: nobody can be blamed)."""
    if job.rival is None:  # a challenged spot check
        return None if verdict.matches else job.provider_address
    if verdict.matches:  # two replicas: the first one reproduced, the replica did not
        return job.rival_address
    index = job.segment + 1
    rival = job.rival.leaves[index].leaf if index < len(job.rival.leaves) else None
    return job.provider_address if verdict.leaf == rival else None


def run_verification(runner: TaskRunner, lease: Lease, log: Callable[[str], None]) -> None:
    """Run a verification lease to its verdict and post it (challenge or resolve first)."""
    job = lease.job
    assert job is not None
    task = lease.task
    workdir = runner.task_dir / job.id
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "out").mkdir(parents=True)
    try:
        verdict = _replay(runner, lease, workdir)
    except (CoordinatorError, OSError, ValueError) as exc:
        log(f"{job.kind} job {job.id} on {task.id}: could not replay ({exc})")
        return  # the job opens again after its ttl
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    where = f"segment {job.segment} of {task.id}"
    payout = runner.payout
    if payout is not None and task.payment is not None:
        key = bytes.fromhex(task.payment.task_key[2:])
        try:
            if job.kind == "spot" and not verdict.matches:
                verdict.tx = payout.challenge(key)
                log(f"challenged {task.id} on chain: {where} does not reproduce")
            elif job.kind == "referee":
                cheater = _cheater(job, verdict)
                verdict.tx = payout.resolve(key, cheater)
                log(f"ruled on {task.id}: {'fraud by ' + str(cheater) if cheater else 'no fraud'}")
        except MarketError as exc:
            log(f"{job.kind} transaction for {task.id} refused on chain: {exc}")
        verdict.signer = payout.account.address
        message = verdict_message(task.id, job.committed.root, job.kind, job.segment, verdict)
        signed = payout.account.sign_message(encode_defunct(text=message))
        verdict.signature = "0x" + bytes(signed.signature).hex()
    try:
        runner.client.post_verdict(lease.id, verdict)
    except CoordinatorError as exc:
        log(f"verdict on {where} refused: {exc.detail}")
        return
    log(f"{job.kind} {where}: {'reproduced' if verdict.matches else 'MISMATCH'} ({verdict.note})")
