"""The worker's side of a verification job: replay one segment, write the verdict.

Runs in the same sandboxed worker as a cell (the cell's code runs again). The
verdict goes to ``out/verdict.json``: the replayed leaf and whether it equals
the committed one. A checkpoint that does not hash to its committed leaf, or a
cell that fails on replay, is a mismatch with a note saying which.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["run_replay"]


def run_replay(job: dict[str, Any]) -> None:
    """Replay ``job["job"]``'s segment and write ``out/verdict.json``."""
    from ..protocol import Bundle, Verdict, VerifyJob
    from ..verify import CheckpointMismatch, CheckpointStore, ReplayResult, replay_segment
    from ._placement import place_on_device

    started = time.monotonic()
    spec = VerifyJob.model_validate(job["job"])
    blob_dir = Path(job["blob_dir"])
    device: str = job["device"]
    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))

    def read_blob(sha: str) -> bytes:
        return (blob_dir / sha).read_bytes()

    def prepare(namespace: Any) -> None:
        names = [name for name in namespace if not name.startswith("__")]
        place_on_device(namespace, names, device=device)

    bundle = Bundle.model_validate_json(read_blob(job["bundle"]))
    committed = spec.committed.leaves[spec.segment + 1].leaf

    def replay() -> ReplayResult:
        return replay_segment(
            bundle,
            read_blob,
            commitment=spec.committed,
            store=CheckpointStore(Path(job["checkpoint_dir"])),
            start=spec.segment,
            device=device,
            prepare=prepare if device != "cpu" else None,
        )

    try:
        result = replay()
    except CheckpointMismatch as exc:
        verdict = Verdict(
            matches=False, note=f"the provider's checkpoint is not what it committed: {exc}"
        )
    except Exception as exc:  # the cell failed on replay: the committed state cannot be reached
        verdict = Verdict(matches=False, note=f"the replay failed: {type(exc).__name__}: {exc}")
    else:
        leaf = "0x" + result.leaf.hex() if result.leaf is not None else None
        how = "from the start" if result.replayed_from_start else f"from leaf {result.started_from}"
        verdict = Verdict(
            leaf=leaf,
            matches=leaf == committed,
            steps=result.steps_run,
            note=f"replayed {result.steps_run} steps {how}; committed {committed[:10]}…, "
            f"replayed {(leaf or 'none')[:10]}…",
        )
        if spec.kind == "referee" and not verdict.matches:
            again = replay()
            if again.leaf != result.leaf:
                # The cell itself does not replay the same twice (the clock, os.urandom,
                # a nondeterministic op): nothing proves the provider wrong.
                verdict = verdict.model_copy(
                    update={
                        "matches": True,
                        "note": "the segment does not replay the same twice here, so no "
                        "fraud can be proven: the challenge is rejected",
                    }
                )
    verdict.seconds = time.monotonic() - started
    out = Path(job["workdir"]) / "out"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "verdict.json.tmp"
    tmp.write_text(json.dumps(verdict.model_dump(mode="json")))
    os.replace(tmp, out / "verdict.json")
