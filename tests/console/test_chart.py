"""The server-drawn SVG: the latency chart with failures marked, and the phase bar."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from connectord.console.chart import HEIGHT, WIDTH, latency_chart, nice_ceiling, phase_bar, phases
from connectord.model import TestResult

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(i: int, ms: int | None, ok: bool = True, kind: str = "refused") -> TestResult:
    details = {} if ok else {"error_kind": kind}
    return TestResult(ok, "c", ms, None if ok else "failed", details, T0 + timedelta(minutes=i))


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # well-formed XML, or this raises


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1.0), (1, 1.0), (3, 5.0), (7, 10.0), (12, 20.0), (180, 200.0), (2400, 2500.0)]
)
def test_the_axis_top_is_a_round_number(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


def test_the_chart_marks_failures_and_reads_oldest_to_newest() -> None:
    # The history comes newest first.
    history = [
        result(3, 40),
        result(2, None, ok=False, kind="timeout"),
        result(1, 12, ok=False),
        result(0, 20),
    ]
    svg = parse(latency_chart(history))
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Latency of the last 4 tests, median 40 ms, 2 failed"
    dots = svg.findall(f"{SVG}circle")
    crosses = svg.findall(f"{SVG}path")
    assert len(dots) == 2
    assert len(crosses) == 2
    assert len(svg.findall(f"{SVG}rect")) == 2  # a band behind each failure
    xs = [float(c.get("cx") or 0) for c in dots]
    assert xs == sorted(xs)  # the oldest on the left
    titles = [c.findtext(f"{SVG}title") for c in dots + crosses]
    assert titles[0] == "2026-01-02 03:04:05 UTC: ok, 20 ms"
    assert "2026-01-02 03:06:05 UTC: timeout, no latency" in titles
    # Higher latency is higher up; the 40 ms test sits at the top of a 0-50 ms axis.
    assert float(dots[1].get("cy") or 0) < float(dots[0].get("cy") or 0)
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    assert {"0 ms", "25 ms", "50 ms"} <= set(labels)
    assert svg.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"


def test_text_in_the_chart_is_escaped() -> None:
    svg = parse(latency_chart([result(0, 5, ok=False, kind='<script>"x"</script>')]))
    (cross,) = svg.findall(f"{SVG}path")
    assert cross.findtext(f"{SVG}title") == '2026-01-02 03:04:05 UTC: <script>"x"</script>, 5 ms'


def test_no_history_is_a_sentence() -> None:
    assert latency_chart([]) == '<p class="muted">No tests yet.</p>'


def test_the_phase_bar_shares_the_width_by_time() -> None:
    details = {"phases": {"probe_ms": 6.0, "resolve_ms": 1.0, "connect_ms": 3.0, "odd": "x", "neg_ms": -1}}
    assert phases(details) == [("resolve", 1.0), ("connect", 3.0), ("probe", 6.0)]
    svg = parse(phase_bar(details))
    widths = [float(r.get("width") or 0) for r in svg.findall(f"{SVG}rect")]
    assert widths == pytest.approx([WIDTH * 0.1, WIDTH * 0.3, WIDTH * 0.6])
    assert svg.get("aria-label") == "Phases: resolve 1 ms, connect 3 ms, probe 6 ms"
    assert phase_bar({}) == ""
    assert phase_bar({"phases": {"resolve_ms": 0}}) == ""
