"""The worker subprocess: runs one captured cell, then exits.

Started ahead of time by the provider (``python -m
gensyn_jupyter.provider._worker --control-fd N``) so that torch is already
imported when a lease arrives; it then reads one job line (JSON) from stdin.
The cell's own stdout and stderr are this process's; metrics and notes go to
the control pipe as JSON lines. Results are written under ``<workdir>/out``
as safetensors + JSON, never pickles.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ranks import Ranks

__all__ = ["main"]


def _warm_up() -> None:
    import torch

    # The first optimizer imports torch._dynamo (about 2 s): pay it before the lease.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    # what a --gpus N task needs, loaded before the sandbox (and before a fork: once)
    import multiprocessing.synchronize  # noqa: F401

    import torch.distributed
    import torch.nn.parallel
    import torch.utils.data.distributed

    import gensyn_jupyter.capture  # noqa: F401


class _Control:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.lock: Any = None
        """A process-shared lock once the task has several ranks (one pipe for all)."""

    def send(self, message: dict[str, Any]) -> None:
        with self.lock or contextlib.nullcontext():
            self._stream.write(json.dumps(message) + "\n")
            self._stream.flush()


def _run(job: dict[str, Any], control: _Control) -> None:
    import torch

    from ..capture import encode_results, load_inputs
    from ..protocol import Bundle, RemoteError, ResultManifest
    from ..verify import Recording, deterministic_mode, seed_everything, seed_for
    from ._autolog import Autolog
    from ._cheats import cheating
    from ._placement import place_on_device
    from ._traceback import CELL_FILENAME, remote_error

    blob_dir = Path(job["blob_dir"])
    out = Path(job["workdir"]) / "out"
    out.mkdir(parents=True, exist_ok=True)
    device: str = job["device"]
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))

    def read_blob(sha: str) -> bytes:
        return (blob_dir / sha).read_bytes()

    bundle = Bundle.model_validate_json(read_blob(job["bundle"]))
    manifest = ResultManifest(device=device)
    started = time.monotonic()
    ranks: Ranks | None = None
    autolog = Autolog(
        emit=lambda points: control.send(
            {"type": "metrics", "points": ranks.label(points) if ranks else points}
        )
    )
    try:
        inputs = load_inputs(bundle, read_blob)
    except Exception as exc:  # the bundle itself is bad: say so, never crash silently
        manifest.error = RemoteError(
            type=type(exc).__qualname__,
            message=f"the provider could not load the cell's inputs: {exc}",
        )
        _finish(out, manifest, started)
        return
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    namespace.update(inputs)
    if int(job.get("gpus") or 1) > 1:  # --gpus N: this process becomes one of N ranks
        import multiprocessing

        from ._ranks import fork_ranks

        control.lock = multiprocessing.Lock()
        ranks = fork_ranks(
            int(job["gpus"]), device, workdir=Path(job["workdir"]), threads=job.get("threads")
        )
        device = ranks.device
    main_rank = ranks is None or ranks.is_main
    placement = place_on_device(namespace, list(inputs), device=device)
    lines = placement.lines
    if ranks is not None:
        try:
            lines = [*lines, *ranks.setup(namespace, bundle.source, seed=seed_for(job["bundle"]))]
        except Exception as exc:
            manifest.error = RemoteError(
                type=type(exc).__qualname__,
                message=f"rank {ranks.rank} could not join the task's process group: {exc}",
            )
            if not ranks.is_main:
                ranks.exit_child(namespace, manifest.error.model_dump())
            ranks.stop()
            _finish(out, manifest, started)
            return
        if ranks.is_main:
            ranks.watch(lambda why: _abort(out, manifest, started, why))
    for line in lines if main_rank else []:
        control.send({"type": "log", "message": line})
    recording: Recording | None = None
    if bundle.checkpoint_every != 0 and main_rank:
        checkpoints = job.get("checkpoint_dir")
        recording = Recording(
            bundle.source,
            namespace,
            every=bundle.checkpoint_every,
            directory=Path(checkpoints) if checkpoints else out / "checkpoints",
            seed=seed_for(job["bundle"]),
            device=device,
            filename=CELL_FILENAME,
        )
    if recording is not None:  # checkpoints announced for upload; a lost run resumed
        from ._resume import follow_checkpoints

        follow_checkpoints(recording, job, control, autolog)
    code = recording.code if recording else compile(bundle.source, CELL_FILENAME, "exec")
    # A dishonest provider for tests and the demo (job "cheat"): see ._cheats.
    cheat = cheating(
        job.get("cheat") if main_rank else None,
        control,
        every=bundle.checkpoint_every,
        expected_steps=job.get("cheat_steps"),
    )
    others = contextlib.ExitStack()
    if ranks is not None and not ranks.is_main and bundle.checkpoint_every != 0:
        others.enter_context(deterministic_mode())  # as rank 0's recording does
        seed_everything(seed_for(job["bundle"]) + ranks.rank)
    with cheat, recording or others:
        autolog.install()
        try:
            exec(code, namespace)
        except BaseException as exc:  # the user's exception, reported with cell lines
            manifest.error = remote_error(
                exc, source=bundle.source, line_offset=bundle.cell_line_offset
            )
        finally:
            autolog.uninstall()
            autolog.flush()
            sys.stdout.flush()
            sys.stderr.flush()
        if recording is not None and manifest.error is None:
            manifest.commitment = recording.finish()
            notes = manifest.commitment.notes if manifest.commitment else []
            if manifest.commitment is None:
                notes = [f"no checkpoint commitment for this run: {recording.failure}"]
            for note in notes:
                control.send({"type": "log", "message": note})
    if ranks is not None:
        if not ranks.is_main:
            ranks.exit_child(namespace, manifest.error.model_dump() if manifest.error else None)
        failure = ranks.join(namespace, failed=manifest.error is not None)
        if failure is not None:  # another rank's error, the cause of this one's if it has one
            manifest.error = RemoteError(type="RankFailed", message=failure)
        ranks.teardown()
    manifest.steps = autolog.steps
    if device.startswith("cuda"):
        manifest.gpu_peak_bytes = int(torch.cuda.max_memory_allocated(torch.device(device)))
    placement.restore(namespace)
    if manifest.error is None:
        try:
            tree_inputs = bundle.model_copy(
                update={"inputs": [i for i in bundle.inputs if i.kind == "tree"]}
            )
            initial = load_inputs(tree_inputs, read_blob)
            names = list(dict.fromkeys([*bundle.outputs, *bundle.returns]))
            encoded = encode_results(namespace, names, initial=initial)
        except Exception as exc:
            manifest.error = RemoteError(
                type=type(exc).__qualname__,
                message=f"the cell ran, but its results could not be encoded: {exc}",
            )
        else:
            (out / "values.json").write_bytes(encoded.values_json)
            if encoded.tensors is not None:
                (out / "tensors.safetensors").write_bytes(encoded.tensors)
            manifest.outputs = encoded.outputs
    _finish(out, manifest, started)


def _finish(out: Path, manifest: Any, started: float) -> None:
    manifest.duration_s = time.monotonic() - started
    tmp = out / "result.json.tmp"
    tmp.write_text(manifest.model_dump_json())
    os.replace(tmp, out / "result.json")


def _abort(out: Path, manifest: Any, started: float, why: str) -> None:
    """Another rank failed while this one (rank 0) waits in a collective: end the job now."""
    from ..protocol import RemoteError

    manifest.error = RemoteError(type="RankFailed", message=why)
    _finish(out, manifest, started)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker when the provider dies (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:  # the provider died before prctl
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gensyn-worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    _warm_up()
    serve_job(args.control_fd)
    return 0


def serve_job(control_fd: int) -> None:
    """Say "ready" on ``control_fd``, read one job from stdin, run it, exit.

    After the warm-up: called by :func:`main`, and in a fork of the fork
    server (:mod:`._forkserver`), which warmed up once for all its children.
    """
    # cuBLAS reads this when CUDA starts: before any tensor reaches the GPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    control = _Control(os.fdopen(control_fd, "w", buffering=1))
    control.send({"type": "ready"})
    line = sys.stdin.readline()
    if not line.strip():
        return
    job = json.loads(line)
    os.chdir(job["workdir"])
    if job.get("kind") == "replay":  # a verification job: see ._replay_job
        from ._replay_job import run_replay

        run_replay(job)
    else:
        _run(job, control)
    # The results are on disk: skip the interpreter's teardown, which takes about
    # a second with torch loaded and would delay the result by as much.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
