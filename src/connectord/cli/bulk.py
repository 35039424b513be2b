"""``connectors test --all``: many tests at once, a progress bar, and a summary.

Locally the facade runs the tests; against a server, the server does
(``POST /api/v1/connectors/bulk-test``) and the command follows its progress.
"""

from __future__ import annotations

import asyncio
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
from connectord.cli.backends import Backend, LocalBackend, RemoteBackend
from connectord.errors import NotFoundError
from connectord.model import BulkItem, BulkTest, BulkTestStatus, ConnectorInfo, ConnectorStatus, TestResult

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
        failures = [(self.name(r), r) for r in sorted(self.failed, key=self.name)]
        slowest = sorted(self.results, key=lambda r: r.latency_ms or 0, reverse=True)[:SLOWEST]
        return _view(
            len(self.results),
            dict(Counter(r.error_kind or "failed" for r in self.failed).most_common()),
            failures[:MAX_FAILURES_SHOWN],
            len(failures),
            [(self.name(r), r) for r in slowest],
            self.seconds,
            "use -o json for all",
        )


def _view(
    tested: int,
    kinds: dict[str, int],
    failures: list[tuple[str, TestResult]],
    failed: int,
    slowest: list[tuple[str, TestResult]],
    seconds: float,
    more: str,
) -> RenderableType:
    """Counts, failures by kind, the failures shown (``more`` tells where the rest are), the slowest."""
    head = Text(f"Tested {tested} connector(s) in {seconds:.1f} s: ")
    head.append(f"{tested - failed} ok", style="green").append(", ")
    head.append(f"{failed} failed", style="red" if failed else "")
    parts: list[RenderableType] = [head]
    if failed:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("FAILED BY KIND")
        table.add_column("COUNT", justify="right")
        for kind, count in kinds.items():
            table.add_row(kind, str(count))
        parts += [Text(""), table, Text("")]
        parts += [render.result_line(name, r) for name, r in failures]
        if failed > len(failures):
            parts.append(Text(f"... and {failed - len(failures)} more ({more})", style="dim"))
    if slowest:
        slow = Table(box=None, header_style="bold", pad_edge=False)
        slow.add_column("SLOWEST")
        slow.add_column("LATENCY", justify="right")
        slow.add_column("RESULT")
        for name, r in slowest:
            result = Text("ok", style="green") if r.success else Text(r.error_kind or "failed", style="red")
            slow.add_row(Text(name), f"{r.latency_ms} ms", result)
        parts += [Text(""), slow]
    return Group(*parts)


@dataclass(slots=True)
class ServerReport:
    """What a bulk test the server ran found (``connectors test --all`` with ``--url``)."""

    bulk: BulkTest

    def _items(self, items: list[BulkItem]) -> list[tuple[str, TestResult]]:
        return [
            (
                i.name or i.connector_id,
                TestResult(
                    success=i.success,
                    connector_id=i.connector_id,
                    latency_ms=i.latency_ms,
                    error=i.error,
                    details={"error_kind": i.error_kind} if i.error_kind else {},
                ),
            )
            for i in items
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML form: the counts and what the server's summary lists."""
        summary = self.bulk.summary
        return {
            "bulk_test_id": self.bulk.id,
            "status": str(self.bulk.status),
            "tested": self.bulk.done,
            "ok": self.bulk.ok,
            "failed": self.bulk.failed,
            "failed_by_kind": summary.failed_by_kind if summary else {},
            "slowest": [{"name": n, "latency_ms": r.latency_ms} for n, r in self._slowest()],
            "seconds": summary.seconds if summary else None,
            "failures": [{"name": n, **r.to_dict()} for n, r in self._failures()],
        }

    def _slowest(self) -> list[tuple[str, TestResult]]:
        return self._items(self.bulk.summary.slowest) if self.bulk.summary else []

    def _failures(self) -> list[tuple[str, TestResult]]:
        return self._items(self.bulk.summary.failures) if self.bulk.summary else []

    def render(self) -> RenderableType:
        """As the local summary reads; a bulk test cut short says so first."""
        summary = self.bulk.summary
        failures = self._failures()[:MAX_FAILURES_SHOWN]
        view = _view(
            self.bulk.done,
            summary.failed_by_kind if summary else {},
            failures,
            self.bulk.failed,
            self._slowest(),
            summary.seconds if summary else 0.0,
            "see each connector's history",
        )
        if self.bulk.status == BulkTestStatus.DONE:
            return view
        note = Text(f"The bulk test was {self.bulk.status} on the server before its end.", style="red")
        return Group(note, view)


async def run_bulk(
    api: Backend, connector_type: str | None, status: str | None, concurrency: int, output: render.Output
) -> int:
    """Test every matching connector; print the summary; the exit code (1 if any failed)."""
    if isinstance(api, RemoteBackend):
        return await _run_on_server(api, connector_type, status, concurrency, output)
    assert isinstance(api, LocalBackend)  # the other backend
    targets: list[ConnectorInfo] = [
        c
        async for c in api.list_connectors(connector_type, status, page_size=1000)
        if c.status != ConnectorStatus.DEPRECATED
    ]
    summary = Summary({c.id: c.name for c in targets})
    start = time.perf_counter()
    with _progress("Testing") as progress:
        task = progress.add_task("test", total=len(targets), failed=0)
        async for result in api.test_many(targets, connector_type, status, concurrency):
            summary.results.append(result)
            progress.update(task, advance=1, failed=len(summary.failed))
    summary.seconds = time.perf_counter() - start
    render.emit(summary.to_dict(), output, summary.render)
    return Code.FAILED if summary.failed else Code.OK


#: How often the command asks the server for a bulk test's progress.
POLL_SECONDS = 0.3


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    )


async def _run_on_server(
    api: RemoteBackend,
    connector_type: str | None,
    status: str | None,
    concurrency: int,
    output: render.Output,
) -> int:
    """The server runs the tests (``POST /connectors/bulk-test``); follow its progress."""
    bulk = await api.start_bulk_test(connector_type, status, concurrency)
    with _progress("Testing on the server") as progress:
        task = progress.add_task("test", total=bulk.total, failed=0)
        while bulk.status == BulkTestStatus.RUNNING:
            await asyncio.sleep(POLL_SECONDS)
            found = await api.bulk_test(bulk.id)
            if found is None:
                raise NotFoundError(f"bulk test {bulk.id} is gone from the server")
            bulk = found
            progress.update(task, total=bulk.total, completed=bulk.done, failed=bulk.failed)
    report = ServerReport(bulk)
    render.emit(report.to_dict(), output, report.render)
    return Code.OK if bulk.status == BulkTestStatus.DONE and not bulk.failed else Code.FAILED
