"""``connectors test --all``: many tests at once, a progress bar, and a summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from connectord.cli import render
from connectord.cli.app import Code, stderr
from connectord.cli.backends import Backend
from connectord.model import ConnectorInfo, ConnectorStatus, TestResult

SLOWEST = 5
MAX_FAILURES_SHOWN = 20


@dataclass(slots=True)
class Summary:
    """What a bulk test found."""

    names: dict[str, str]
    results: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TestResult]:
        """The failed results."""
        return [r for r in self.results if not r.success]

    def name(self, result: TestResult) -> str:
        """The connector name of a result."""
        return self.names.get(result.connector_id, result.connector_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML form: every result and the counts."""
        kinds = Counter(r.error_kind or "failed" for r in self.failed)
        slowest = sorted(self.results, key=lambda r: r.latency_ms or 0, reverse=True)[:SLOWEST]
        return {
            "tested": len(self.results),
            "ok": len(self.results) - len(self.failed),
            "failed": len(self.failed),
            "failed_by_kind": dict(kinds.most_common()),
            "slowest": [{"name": self.name(r), "latency_ms": r.latency_ms} for r in slowest],
            "seconds": round(self.seconds, 3),
            "results": [{"name": self.name(r), **r.to_dict()} for r in self.results],
        }

    def render(self) -> RenderableType:
        """The summary people read: counts, failures by kind, the failures, the slowest."""
        ok, failed = len(self.results) - len(self.failed), len(self.failed)
        head = Text(f"Tested {len(self.results)} connector(s) in {self.seconds:.1f} s: ")
        head.append(f"{ok} ok", style="green").append(", ")
        head.append(f"{failed} failed", style="red" if failed else "")
        parts: list[RenderableType] = [head]
        if failed:
            kinds = Table(box=None, header_style="bold", pad_edge=False)
            kinds.add_column("FAILED BY KIND")
            kinds.add_column("COUNT", justify="right")
            for kind, count in Counter(r.error_kind or "failed" for r in self.failed).most_common():
                kinds.add_row(kind, str(count))
            parts += [Text(""), kinds, Text("")]
            shown = sorted(self.failed, key=self.name)[:MAX_FAILURES_SHOWN]
            parts += [render.result_line(self.name(r), r) for r in shown]
            if failed > len(shown):
                parts.append(Text(f"... and {failed - len(shown)} more (use -o json for all)", style="dim"))
        if self.results:
            slow = Table(box=None, header_style="bold", pad_edge=False)
            slow.add_column("SLOWEST")
            slow.add_column("LATENCY", justify="right")
            slow.add_column("RESULT")
            for r in sorted(self.results, key=lambda r: r.latency_ms or 0, reverse=True)[:SLOWEST]:
                result = (
                    Text("ok", style="green") if r.success else Text(r.error_kind or "failed", style="red")
                )
                slow.add_row(Text(self.name(r)), f"{r.latency_ms} ms", result)
            parts += [Text(""), slow]
        return Group(*parts)


async def run_bulk(
    api: Backend, connector_type: str | None, status: str | None, concurrency: int, output: render.Output
) -> int:
    """Test every matching connector; print the summary; the exit code (1 if any failed)."""
    targets: list[ConnectorInfo] = [
        c
        async for c in api.list_connectors(connector_type, status, page_size=1000)
        if c.status != ConnectorStatus.DEPRECATED
    ]
    summary = Summary({c.id: c.name for c in targets})
    start = time.perf_counter()
    progress = Progress(
        TextColumn("Testing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    )
    with progress:
        task = progress.add_task("test", total=len(targets), failed=0)
        async for result in api.test_many(targets, connector_type, status, concurrency):
            summary.results.append(result)
            progress.update(task, advance=1, failed=len(summary.failed))
    summary.seconds = time.perf_counter() - start
    render.emit(summary.to_dict(), output, summary.render)
    return Code.FAILED if summary.failed else Code.OK
