"""``connectord apply`` and ``connectord export``: connectors as a file (:mod:`connectord.declarative`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from connectord.cli.app import run, stderr, stdout
from connectord.cli.common import TenantOpt, backend
from connectord.cli.inputs import LegacyTypeOpt, TypeFilterOpt, connector_type_flag
from connectord.declarative import (
    CREATE,
    DELETE,
    TYPE_ALIAS,
    UNCHANGED,
    UPDATE,
    Plan,
    apply_plan,
    check_references,
    dump_document,
    export_document,
    make_plan,
    parse_document,
)

_MARKS = {CREATE: ("+", "green"), UPDATE: ("~", "yellow"), DELETE: ("-", "red"), UNCHANGED: ("=", "dim")}
_DONE = {CREATE: "created", UPDATE: "updated", DELETE: "deleted", UNCHANGED: "unchanged"}


def _plan_text(plan: Plan) -> Text:
    text = Text()
    for change in plan.changes:
        mark, style = _MARKS[change.action]
        text.append(f"{mark} {change.name}", style=style).append(
            f" ({change.connector_type}) {change.action}\n"
        )
        for note in change.notes:
            text.append(f"    {note}\n", style="dim")
    return text


def _read(path: str) -> tuple[str, Path]:
    if path == "-":
        return sys.stdin.read(), Path.cwd()
    file = Path(path)
    try:
        return file.read_text(), file.resolve().parent
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="-f") from None


def apply(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Option("--file", "-f", help="The connectors file (- for stdin).", metavar="FILE")
    ],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete connectors the file does not declare.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    update_secrets: Annotated[
        bool,
        typer.Option("--update-secrets", help="Re-send secrets that are already set (after a rotation)."),
    ] = False,
    tenant: TenantOpt = None,
) -> None:
    """Create or update connectors from a file; a second run changes nothing.

    Connectors are matched by name. Secrets in the file are references: ${ENV_VAR} or file:PATH
    (resolved here), or ref+env:NAME, ref+file:PATH, ref+aws-sm:ID (kept by the server). Only a
    secret whose fingerprint differs from the stored one is sent.

    [dim]connectord apply -f connectors.yaml --dry-run
    connectord apply -f connectors.yaml --prune[/dim]
    """
    text, base_dir = _read(file)

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            declared = parse_document(text, await api.connector_types())
            if any(d.type_key == TYPE_ALIAS for d in declared):
                stderr().print(
                    f"note: {TYPE_ALIAS}: is the old name of connector_type: (both work; export writes "
                    "connector_type)",
                    style="dim",
                )
            plan = await make_plan(
                api, declared, prune=prune, update_secrets=update_secrets, base_dir=base_dir
            )
            secrets = check_references(plan, base_dir)
            out = stdout()
            out.print(_plan_text(plan), end="")
            if plan.undeclared:
                stderr().print(
                    f"note: {len(plan.undeclared)} connector(s) not in the file are kept "
                    f"({', '.join(plan.undeclared[:5])}{', ...' if len(plan.undeclared) > 5 else ''}); "
                    "--prune deletes them",
                    style="dim",
                )
            if dry_run or not plan.has_changes:
                out.print(
                    plan.summary() + (" (dry run: nothing changed)" if dry_run and plan.has_changes else "")
                )
                return
            await apply_plan(api, plan, secrets)
            done = [
                f"{plan.count(a)} {_DONE[a]}" for a in (CREATE, UPDATE, DELETE, UNCHANGED) if plan.count(a)
            ]
            out.print("Applied: " + ", ".join(done) + ".")

    run(ctx, work)


def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file (default: stdout).", dir_okay=False),
    ] = None,
    connector_type: TypeFilterOpt = None,
    legacy_type: LegacyTypeOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Write the tenant's connectors in the apply format; secrets become ${NAME_FIELD} references.

    [dim]connectord export -o connectors.yaml && connectord apply -f connectors.yaml   # unchanged[/dim]
    """
    connector_type = connector_type_flag(connector_type, legacy_type)

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            doc = await export_document(api, connector_type)
        text = dump_document(doc)
        if output is None:
            stdout().out(text, highlight=False, end="")
        else:
            output.write_text(text)
            stderr().print(f"Wrote {len(doc['connectors'])} connector(s) to {output}.")

    run(ctx, work)
