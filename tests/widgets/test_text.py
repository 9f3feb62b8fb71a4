"""TextProgress: the monitor as one text line, for plain IPython and scripts."""

from __future__ import annotations

import io

from gensyn_jupyter.widgets import TextProgress


def test_one_line_redrawn_in_place_then_a_summary() -> None:
    out = io.StringIO()
    progress = TextProgress(stream=out)
    progress.min_interval = 0.0
    progress.set_status(state="queued", message="waiting", ts=0.0)
    progress.set_status(state="running", message="running", ts=1.0, provider="p-1", device="cpu")
    progress.add_points([{"step": 1, "name": "loss", "value": 2.5}])
    progress.set_progress(steps=0, total_steps=1000, elapsed=1.0, gpu_seconds=0.0)
    progress.set_progress(steps=200, total_steps=1000, elapsed=3.0, gpu_seconds=2.0)
    progress.add_points([{"step": 200, "name": "loss", "value": 0.123456}])
    progress.finish(
        state="settled",
        summary={
            "task_id": "t-9",
            "steps": 1000,
            "duration_s": 10.0,
            "gpu_seconds": 9.5,
            "loss_first": 2.5,
            "loss_last": 0.1,
            "provider": "p-1",
            "device": "cpu",
        },
    )
    text = out.getvalue()
    frames = text.split("\r")
    assert "[gensyn] queued" in frames[1]
    last_live = [f for f in frames if "200/1,000 steps" in f][-1]
    assert "running on p-1 (cpu)" in last_live
    assert "100.0 steps/s" in last_live
    assert "loss 0.1235" in last_live
    assert "ETA 8.0 s" in last_live
    summary = text.rstrip("\n").split("\n")[-1]
    assert summary == (
        "[gensyn] task t-9 settled on p-1 (cpu) · 1,000 steps · 10.0 s · 9.5 GPU·s · loss 2.5 → 0.1"
    )


def test_redraws_at_most_five_times_a_second() -> None:
    out = io.StringIO()
    progress = TextProgress(stream=out)
    for i in range(1000):
        progress.set_progress(steps=i, total_steps=None, elapsed=i / 1000, gpu_seconds=0.0)
    assert out.getvalue().count("\r") <= 2


def test_log_text_is_written_through_above_the_line() -> None:
    out = io.StringIO()
    progress = TextProgress(stream=out)
    progress.set_status(state="running", message="", ts=0.0)
    progress.add_log("epoch 1 done\n")
    progress.add_log("no newline yet")
    progress.set_status(state="committed", message="", ts=1.0)
    text = out.getvalue()
    assert "epoch 1 done\n" in text
    # the line that was on screen was wiped before the log text
    before, _ = text.split("epoch 1 done")
    assert before.endswith("\r")
    # a partial log line is ended before the progress line comes back
    assert "no newline yet\n\r[gensyn] committed" in text


def test_finish_twice_writes_one_summary() -> None:
    out = io.StringIO()
    progress = TextProgress(stream=out)
    progress.finish(state="failed", summary={"task_id": "t-1"})
    progress.finish(state="failed", summary={"task_id": "t-1"})
    assert out.getvalue().count("[gensyn] task t-1 failed") == 1
