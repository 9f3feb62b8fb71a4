"""TrainingMonitor: what the browser receives, and what the saved output holds."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from gensyn_jupyter.widgets import TrainingMonitor

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Browser:
    """Applies the widget's custom messages as the TypeScript store does."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.lock = threading.Lock()

    def send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with self.lock:
            self.messages.append((content, list(buffers or [])))
            for i, meta in enumerate(content["series"]):
                xs = np.frombuffer(buffers[2 * i], dtype="<f8").tolist()  # type: ignore[index]
                ys = np.frombuffer(buffers[2 * i + 1], dtype="<f8").tolist()  # type: ignore[index]
                assert len(xs) == len(ys) == meta["n"]
                if content["type"] == "reset":
                    self.series[meta["name"]] = (xs, ys)
                else:
                    old = self.series.setdefault(meta["name"], ([], []))
                    old[0].extend(xs)
                    old[1].extend(ys)

    @property
    def seqs(self) -> list[int]:
        return [c["seq"] for c, _ in self.messages]


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TrainingMonitor, Browser]]:
    widget = TrainingMonitor(task_id="t-1", network="http://127.0.0.1:1")
    browser = Browser()
    monkeypatch.setattr(widget, "send", browser.send)
    yield widget, browser
    widget.close()


def points(name: str, start: int, stop: int) -> list[dict[str, Any]]:
    return [{"step": s, "name": name, "value": s * 0.5} for s in range(start, stop)]


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_points_arrive_in_order_without_gaps(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, browser = monitor
    widget.min_interval = 0.5
    for start in range(0, 1000, 10):
        widget.add_points(points("loss", start, start + 10))
        if start % 100 == 0:
            widget.add_points([{"step": start, "name": "acc", "value": 0.9}])
    widget.flush()
    assert browser.seqs == list(range(len(browser.seqs)))
    assert all(c["type"] == "append" for c, _ in browser.messages)
    assert browser.series["loss"] == (list(map(float, range(1000))), [s * 0.5 for s in range(1000)])
    assert browser.series["acc"][0] == [float(s) for s in range(0, 1000, 100)]
    assert widget.metrics == ["loss", "acc"]
    # 100 calls in a burst do not make 100 messages
    assert len(browser.messages) < 20


def test_sends_are_throttled_and_the_timer_flushes_the_rest(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, browser = monitor
    widget.min_interval = 0.5  # wide, so a slow machine does not flush inline
    widget.add_points(points("loss", 0, 1))  # first batch goes at once
    assert len(browser.messages) == 1
    widget.add_points(points("loss", 1, 5))  # within min_interval: waits for the timer
    assert len(browser.messages) == 1
    wait_for(lambda: len(browser.series["loss"][0]) == 5)
    assert len(browser.messages) == 2


def test_a_long_metric_is_reset_to_a_downsampled_head_plus_a_full_tail(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, browser = monitor
    widget.max_points, widget.head_points, widget.tail_points = 100, 30, 20
    widget.add_points(points("loss", 0, 90))
    widget.flush()
    assert [c["type"] for c, _ in browser.messages] == ["append"]
    widget.add_points(points("loss", 90, 150))
    widget.flush()
    content, _ = browser.messages[-1]
    assert content["type"] == "reset"
    assert content["series"] == [{"name": "loss", "n": 50, "head": 30}]
    xs, ys = browser.series["loss"]
    assert xs[0] == 0.0  # LTTB keeps the first point
    assert xs[30:] == [float(s) for s in range(130, 150)]  # the tail at full resolution
    assert ys[30:] == [s * 0.5 for s in range(130, 150)]
    assert xs == sorted(xs)
    # appends continue after the reset, without a gap
    widget.add_points(points("loss", 150, 160))
    widget.flush()
    assert browser.messages[-1][0]["type"] == "append"
    assert browser.series["loss"][0][-11:] == [float(s) for s in range(149, 160)]
    assert browser.seqs == list(range(len(browser.seqs)))
    # the kernel keeps everything
    steps, values = widget.history()["loss"]
    assert steps == list(range(160)) and values[-1] == 159 * 0.5


def test_the_browser_never_holds_more_than_max_points_of_a_metric(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, browser = monitor
    widget.max_points, widget.head_points, widget.tail_points = 400, 200, 50
    for start in range(0, 20_000, 37):
        widget.add_points(points("loss", start, min(start + 37, 20_000)))
        widget.flush()
        assert len(browser.series["loss"][0]) <= 400
    assert browser.series["loss"][0][-1] == 19_999.0
    assert len(widget.history()["loss"][0]) == 20_000


def test_four_threads_adding_points_lose_nothing(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, browser = monitor
    widget.max_points = 100_000  # no reset: compare every point

    def feed(k: int) -> None:
        for start in range(0, 2500, 10):
            widget.add_points(points(f"m{k}", start, start + 10))
            widget.add_points(points("shared", k * 10_000 + start, k * 10_000 + start + 10))

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    widget.flush()
    history = widget.history()
    for k in range(4):
        assert history[f"m{k}"][0] == list(range(2500))
        assert browser.series[f"m{k}"][0] == list(map(float, range(2500)))
        mine = [s for s in history["shared"][0] if k * 10_000 <= s < (k + 1) * 10_000]
        assert mine == list(range(k * 10_000, k * 10_000 + 2500))  # each thread's order kept
    assert len(history["shared"][0]) == 10_000
    assert browser.series["shared"][0] == [float(s) for s in history["shared"][0]]
    assert browser.seqs == list(range(len(browser.seqs)))


def test_malformed_points_are_skipped(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, _ = monitor
    widget.add_points(
        [
            {"step": 1, "name": "loss", "value": 1.0},
            {"step": "x", "name": "loss", "value": 1.0},
            {"step": 2.5, "name": "loss", "value": 1.0},
            {"step": 3, "name": "", "value": 1.0},
            {"step": 4, "name": "loss", "value": None},
            {"name": "loss", "value": 1.0},
            {"step": 5, "name": "loss", "value": "2.5"},
            {"step": 6.0, "name": "loss", "value": float("nan")},
        ]
    )
    steps, values = widget.history()["loss"]
    assert steps == [1, 5, 6] and values[:2] == [1.0, 2.5]


def test_a_reloaded_page_gets_everything_back(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, browser = monitor
    widget.max_points, widget.head_points, widget.tail_points = 100, 30, 20
    widget.add_points(points("loss", 0, 500) + points("acc", 0, 10))
    widget._on_frontend_msg(widget, {"type": "resync"}, [])
    content, _ = browser.messages[-1]
    assert content["type"] == "reset" and content["full"] is True
    assert {s["name"] for s in content["series"]} == {"loss", "acc"}
    assert browser.series["acc"][0] == list(map(float, range(10)))
    assert browser.series["loss"][0][-20:] == [float(s) for s in range(480, 500)]


def test_status_builds_the_timeline(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, _ = monitor
    widget.set_status(state="queued", message="waiting for a provider", ts=100.0)
    widget.set_status(state="queued", message="2 providers online", ts=101.0)
    widget.set_status(
        state="running", message="running", ts=103.5, provider="p-7", device="NVIDIA H100"
    )
    assert widget.status == "running"
    assert (widget.provider, widget.device) == ("p-7", "NVIDIA H100")
    assert [(e["state"], e["message"], e["ts"]) for e in widget.timeline] == [
        ("queued", "2 providers online", 100.0),
        ("running", "running", 103.5),
    ]
    widget.set_status(state="committed", message="committing", ts=110.0)
    assert widget.provider == "p-7"  # not forgotten when a later state does not repeat it


def test_progress_updates_steps_cost_and_throughput(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, _ = monitor
    widget.set_progress(steps=0, total_steps=None, elapsed=0.0, gpu_seconds=0.0)
    assert (widget.steps, widget.total_steps) == (0, 0)
    for i in range(1, 11):
        widget.set_progress(steps=i * 50, total_steps=1000, elapsed=i * 0.5, gpu_seconds=i * 0.5)
    widget.flush()
    assert (widget.steps, widget.total_steps) == (500, 1000)
    assert widget.elapsed == 5.0 and widget.gpu_seconds == 5.0
    assert widget.throughput == pytest.approx(100.0)


def test_log_tail_keeps_the_last_200_lines(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, _ = monitor
    for i in range(500):
        widget.add_log(f"line {i}\n")
    widget.add_log("partial")
    widget.add_log(" and more\nepoch 1: 10%\repoch 1: 50%\repoch 1: 100%\n")
    widget.add_log("x" * 100_000 + "\n")
    widget.flush()
    lines = widget.log_tail.splitlines()
    assert len(lines) == 200
    assert lines[-4:-1] == ["line 499", "partial and more", "epoch 1: 100%"]
    assert len(lines[-1]) <= 2000
    assert len(widget.log_tail) < 200 * 2001


def test_finish_flushes_and_marks_done(monitor: tuple[TrainingMonitor, Browser]) -> None:
    widget, browser = monitor
    widget.add_points(points("loss", 0, 1))
    widget.add_points(points("loss", 1, 40))  # waiting for the timer
    widget.set_status(state="running", message="running", ts=1.0)
    widget.finish(
        state="settled",
        summary={
            "task_id": "t-1",
            "state": "settled",
            "steps": 40,
            "duration_s": 2.0,
            "gpu_seconds": 1.5,
            "provider": None,
        },
    )
    assert widget.done and widget.status == "settled"
    assert widget.timeline[-1]["state"] == "settled"
    assert len(browser.series["loss"][0]) == 40
    assert widget.throughput == pytest.approx(20.0) and widget.gpu_seconds == 1.5
    widget.add_points(points("loss", 40, 41))  # late points still arrive, at once
    assert len(browser.series["loss"][0]) == 41
    flusher = widget._flusher
    wait_for(lambda: flusher is None or not flusher.is_alive())  # the timer thread ended


def test_the_output_bundle_holds_the_widget_and_the_snapshot(
    monitor: tuple[TrainingMonitor, Browser],
) -> None:
    widget, _ = monitor
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    data, _meta = bundle
    assert set(data) == {WIDGET_VIEW, "text/html", "text/plain"}
    assert data[WIDGET_VIEW]["model_id"] == widget.model_id
    assert "No metrics" in data["text/html"]
    widget.add_points(points("loss", 1, 101))
    widget.finish(
        state="settled",
        summary={"task_id": "t-1", "state": "settled", "loss_first": 0.5, "loss_last": 50.0},
    )
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    data, _meta = bundle
    assert "<svg" in data["text/html"] and "loss" in data["text/html"]
    assert "settled" in data["text/plain"] and "loss: 0.5 → 50" in data["text/plain"]
    assert widget.snapshot() == {k: data[k] for k in ("text/plain", "text/html")}


def test_each_monitor_has_its_own_store_key() -> None:
    a = TrainingMonitor(task_id="t", network="n")
    b = TrainingMonitor(task_id="t", network="n")
    assert a._store_key and a._store_key != b._store_key
    a.close()
    b.close()


def test_importing_the_package_loads_neither_torch_nor_anywidget() -> None:
    code = (
        "import sys, gensyn_jupyter.widgets as w\n"
        "print('torch' in sys.modules, 'anywidget' in sys.modules, sorted(w.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "False False ['TextProgress', 'TrainingMonitor', 'lttb', 'render_snapshot']"
    )


def test_the_flush_thread_ends_when_idle(
    monitor: tuple[TrainingMonitor, Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gensyn_jupyter.widgets import _monitor

    monkeypatch.setattr(_monitor, "_IDLE_THREAD_EXIT", 0.05)
    widget, browser = monitor
    widget.add_points(points("loss", 0, 1))
    widget.add_points(points("loss", 1, 3))  # starts the timer thread
    thread = widget._flusher
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive() and widget._flusher is None
    widget.add_points(points("loss", 3, 4))  # the next update still arrives
    widget.add_points(points("loss", 4, 5))
    wait_for(lambda: len(browser.series["loss"][0]) == 5)
