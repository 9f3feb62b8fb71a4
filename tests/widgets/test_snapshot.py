"""The static snapshot a saved notebook shows: SVG chart + tables, no script."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from gensyn_jupyter.widgets import render_snapshot

SVG = "{http://www.w3.org/2000/svg}"
SUMMARY = {
    "task_id": "t-42",
    "state": "settled",
    "provider": "p-1",
    "device": "NVIDIA H100",
    "steps": 300,
    "duration_s": 12.5,
    "gpu_seconds": 11.25,
    "loss_first": 2.5,
    "loss_last": 0.125,
}


def svg_of(html: str) -> ET.Element:
    match = re.search(r"<svg.*</svg>", html, re.S)
    assert match, "no <svg> in the snapshot"
    return ET.fromstring(match.group(0))


def polylines(svg: ET.Element) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in line.attrib["points"].split()]  # type: ignore[misc]
        for line in svg.iter(f"{SVG}polyline")
    ]


def test_one_line_per_metric_in_a_valid_svg_and_a_summary_table() -> None:
    steps = list(range(1, 301))
    history = {
        "val_acc": (steps[::10], [i / 30 for i in range(30)]),
        "loss": (steps, [2.5 / s for s in steps]),
    }
    out = render_snapshot(history, SUMMARY)
    assert set(out) == {"text/plain", "text/html"}
    root = ET.fromstring(out["text/html"])  # the whole fragment is well-formed
    assert root.tag == "div"
    lines = polylines(svg_of(out["text/html"]))
    assert [len(line) for line in lines] == [300, 30]  # loss first
    panels = [g.attrib["data-metric"] for g in svg_of(out["text/html"]).iter(f"{SVG}g")]
    assert panels == ["loss", "val_acc"]
    # the loss falls, so its line goes down the screen (y grows)
    assert lines[0][0][1] < lines[0][-1][1]
    text = ET.tostring(root, encoding="unicode", method="text")
    for shown in (
        "t-42",
        "settled",
        "p-1",
        "NVIDIA H100",
        "300",
        "12.5 s",
        "11.2 GPU·s",
        "2.5 → 0.125",
    ):
        assert shown in text
    plain = out["text/plain"]
    assert "settled" in plain and "loss: 2.5 → 0.008333" in plain and "val_acc" in plain


def test_axes_have_tick_labels() -> None:
    out = render_snapshot({"loss": ([0, 1000], [1.0, 3.0])}, {})
    labels = [t.text for t in svg_of(out["text/html"]).iter(f"{SVG}text")]
    assert "step" in labels
    assert "0" in labels and "1,000" in labels  # x ticks
    assert "2.0" in labels or "2" in labels  # y ticks


def test_every_string_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    out = render_snapshot(
        {evil: ([1, 2], [1.0, 2.0])},
        {"task_id": 'a"b<c>', "state": "<b>done</b>", "provider": evil, "note": evil},
    )
    html = out["text/html"]
    assert "<script" not in html and "<b>" not in html
    root = ET.fromstring(html)
    text = ET.tostring(root, encoding="unicode", method="text")
    assert evil in text and "<b>done</b>" in text
    assert root.attrib["data-gensyn-task"] == 'a"b<c>'


def test_empty_history() -> None:
    out = render_snapshot({}, {"task_id": "t-1", "state": "cancelled"})
    assert "<svg" not in out["text/html"]
    ET.fromstring(out["text/html"])
    assert "No metrics" in out["text/html"]
    assert "cancelled" in out["text/plain"] and "no metrics" in out["text/plain"]
    assert render_snapshot({}, {})["text/plain"].startswith("gensyn")


def test_missing_summary_values_are_left_out() -> None:
    out = render_snapshot({"loss": ([1], [0.5])}, {"state": "failed", "provider": None})
    text = ET.tostring(ET.fromstring(out["text/html"]), encoding="unicode", method="text")
    assert "Provider" not in text and "failed" in text


def test_a_single_point_is_drawn_as_a_dot() -> None:
    out = render_snapshot({"loss": ([7], [0.5])}, SUMMARY)
    svg = svg_of(out["text/html"])
    assert not polylines(svg)
    assert len(list(svg.iter(f"{SVG}circle"))) == 1


def test_nan_and_infinite_values_are_left_out_of_the_line() -> None:
    values = [1.0, math.nan, 0.5, math.inf, 0.25]
    out = render_snapshot({"loss": (list(range(5)), values)}, {})
    (line,) = polylines(svg_of(out["text/html"]))
    assert len(line) == 3
    assert all(math.isfinite(v) for point in line for v in point)
    assert "0.25" in out["text/plain"]


def test_constant_series_still_renders() -> None:
    out = render_snapshot({"lr": (list(range(100)), [1e-3] * 100)}, {})
    (line,) = polylines(svg_of(out["text/html"]))
    assert len({y for _, y in line}) == 1


def test_a_million_points_render_at_most_1000_per_line() -> None:
    n = 1_000_000
    steps = np.arange(n)
    history = {
        "loss": (steps, np.exp(-steps / 2e5) + np.sin(steps / 50) * 0.01),
        "acc": (steps[::2], np.linspace(0, 1, n // 2)),
    }
    out = render_snapshot(history, SUMMARY)  # type: ignore[arg-type]
    lines = polylines(svg_of(out["text/html"]))
    assert len(lines) == 2
    assert all(len(line) <= 1000 for line in lines)
    assert "1,000,000 points" in out["text/plain"]
