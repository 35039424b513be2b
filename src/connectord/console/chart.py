"""Charts drawn on the server as SVG, so they need no script: a connector's test
history as a latency chart with its failures marked, and a test's phases as one
stacked bar.

Both are plain markup (no inline style: the console's Content-Security-Policy
allows none); colours come from classes the console's stylesheet defines, and
each chart carries a text alternative (``role="img"`` and a label), each point a
``<title>`` that reads out its test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

from connectord.model import TestResult

#: The drawing's size in user units; it scales to the width of its box.
WIDTH, HEIGHT = 900, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 14, 30
#: The order phases are drawn in (the probes' names, ``<phase>_ms``); others follow.
PHASE_ORDER = ("resolve", "connect", "tls", "auth", "authenticate", "probe", "request", "query")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value``
    (a chart's top: round numbers on the axis)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def _time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "unknown time"


def _point_title(result: TestResult) -> str:
    latency = f"{result.latency_ms} ms" if result.latency_ms is not None else "no latency"
    if result.success:
        return f"{_time(result.tested_at)}: ok, {latency}"
    kind = result.details.get("error_kind") or "failed"
    return f"{_time(result.tested_at)}: {kind}, {latency}"


def summary(tests: Sequence[TestResult]) -> str:
    """The chart's text alternative: how many tests, their median latency, how many failed."""
    failures = sum(1 for t in tests if not t.success)
    ok = sorted(t.latency_ms for t in tests if t.success and t.latency_ms is not None)
    text = f"Latency of the last {len(tests)} tests"
    text += f", median {ok[len(ok) // 2]} ms" if ok else ""
    return text + (f", {failures} failed" if failures else ", none failed")


class _Plot:
    """Where a test's point goes: tests evenly spaced, latency up from 0 to ``top``."""

    def __init__(self, count: int, top: float) -> None:
        self.count, self.top = count, top
        self.width = WIDTH - _LEFT - _RIGHT
        self.height = HEIGHT - _TOP - _BOTTOM
        self.step = self.width / max(count - 1, 1)

    def x(self, i: int) -> float:
        return _LEFT + (i * self.step if self.count > 1 else self.width / 2)

    def y(self, ms: float) -> float:
        return _TOP + self.height - (ms / self.top) * self.height


def latency_chart(history: Sequence[TestResult]) -> Markup:
    """The latency of these tests (newest first, as the history gives them), drawn oldest
    to newest from left to right: successes as dots on a line, failures as crosses on a
    red band. An empty history is a sentence, not an empty chart."""
    tests = list(reversed(history))
    if not tests:
        return Markup('<p class="muted">No tests yet.</p>')
    top = nice_ceiling(max((t.latency_ms for t in tests if t.latency_ms is not None), default=1))
    plot = _Plot(len(tests), top)
    text = escape(summary(tests))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{text}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{text}</title>',
        *_axes(plot, tests),
        *_failure_bands(plot, tests),
        *_points(plot, tests),
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped


def _axes(plot: _Plot, tests: Sequence[TestResult]) -> list[str]:
    """Grid lines at 0, half and the top, with their latency; the first and last test's time."""
    parts: list[str] = []
    for fraction in (0.0, 0.5, 1.0):
        gy = plot.y(plot.top * fraction)
        parts.append(f'<line class="grid" x1="{_LEFT}" y1="{gy:.1f}" x2="{WIDTH - _RIGHT}" y2="{gy:.1f}"/>')
        label = _ms_label(plot.top * fraction)
        parts.append(f'<text class="axis" x="{_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">{label}</text>')
    base = HEIGHT - 10
    parts.append(f'<text class="axis" x="{_LEFT}" y="{base}">{escape(_time(tests[0].tested_at))}</text>')
    if len(tests) > 1:
        last = escape(_time(tests[-1].tested_at))
        parts.append(f'<text class="axis" x="{WIDTH - _RIGHT}" y="{base}" text-anchor="end">{last}</text>')
    return parts


def _failure_bands(plot: _Plot, tests: Sequence[TestResult]) -> list[str]:
    """A red band behind each failed test, so failures show at a glance."""
    band = min(max(plot.step * 0.6, 4.0), 24.0)
    return [
        f'<rect class="fail-band" x="{plot.x(i) - band / 2:.1f}" y="{_TOP}" width="{band:.1f}" '
        f'height="{plot.height}"/>'
        for i, test in enumerate(tests)
        if not test.success
    ]


def _points(plot: _Plot, tests: Sequence[TestResult]) -> list[str]:
    """The successes' line and dots, the failures' crosses (at their latency, or on the
    axis when they have none); each point's title reads out its test."""
    parts: list[str] = []
    line = [
        f"{plot.x(i):.1f},{plot.y(t.latency_ms):.1f}"
        for i, t in enumerate(tests)
        if t.success and t.latency_ms is not None
    ]
    if len(line) > 1:
        parts.append(f'<polyline class="latency" points="{" ".join(line)}"/>')
    for i, test in enumerate(tests):
        title = f"<title>{escape(_point_title(test))}</title>"
        x, ms = plot.x(i), test.latency_ms
        if test.success and ms is not None:
            parts.append(f'<circle class="ok" cx="{x:.1f}" cy="{plot.y(ms):.1f}" r="4">{title}</circle>')
        elif not test.success:
            y, d = (plot.y(ms) if ms is not None else _TOP + plot.height), 5
            parts.append(
                f'<path class="fail" d="M{x - d:.1f},{y - d:.1f} L{x + d:.1f},{y + d:.1f} '
                f'M{x - d:.1f},{y + d:.1f} L{x + d:.1f},{y - d:.1f}">{title}</path>'
            )
    return parts


def _ms_label(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    return f"{ms:g} ms"


def phases(details: Mapping[str, object]) -> list[tuple[str, float]]:
    """A test's phase timings, ``(name, ms)`` in the order they happen."""
    raw = details.get("phases")
    if not isinstance(raw, Mapping):
        return []
    found: list[tuple[str, float]] = []
    for key, value in raw.items():
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            found.append((str(key).removesuffix("_ms"), float(value)))
    rank = {name: i for i, name in enumerate(PHASE_ORDER)}
    return sorted(found, key=lambda item: rank.get(item[0], len(rank)))


def phase_bar(details: Mapping[str, object]) -> Markup:
    """A test's phases as one bar, each phase's width its share of their sum (empty when
    the type reports none); the page lists the figures beside it as text."""
    steps = phases(details)
    total = sum(ms for _, ms in steps)
    if not steps or total <= 0:
        return Markup("")
    label = ", ".join(f"{name} {ms:g} ms" for name, ms in steps)
    parts = [
        f'<svg class="phases" viewBox="0 0 {WIDTH} 18" role="img" aria-label="Phases: {escape(label)}" '
        'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
    ]
    at = 0.0
    for i, (name, ms) in enumerate(steps):
        width = WIDTH * ms / total
        parts.append(
            f'<rect class="phase phase-{i % 6}" x="{at:.2f}" y="0" width="{max(width, 0.5):.2f}" height="18">'
            f"<title>{escape(name)}: {ms:g} ms</title></rect>"
        )
        at += width
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it was escaped above
