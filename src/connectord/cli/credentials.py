"""``connectord connectors credentials``: the one command that prints secrets (``docs/use.md``).

It checks a connector's credentials out (``POST /connectors/{id}/credentials`` with
``--url``, the facade locally): audited, refused for ``http`` and ``mcp`` connectors and
when the tenant turned checkout off. Three formats: the checkout as JSON, shell
``export`` lines, or the bare DSN (``psql "$(connectord connectors credentials db --format dsn)"``).
"""

from __future__ import annotations

import enum
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer

from connectord.cli.app import run, stderr, stdout
from connectord.cli.common import TenantOpt, backend, find_connector, is_connector_id
from connectord.errors import ValidationError
from connectord.model import Checkout


class Format(enum.StrEnum):
    """What ``connectors credentials`` prints."""

    JSON = "json"
    ENV = "env"
    DSN = "dsn"


#: What is not a letter, a digit or ``_`` in an environment variable's name.
_NOT_NAME = re.compile(r"[^A-Z0-9_]")


def env_lines(found: Checkout, prefix: str) -> list[str]:
    """``export NAME='value'`` lines: the type, endpoint and DSN, then every config field
    (nested fields joined by ``_``, lists as JSON, ``null`` left out). Values are quoted
    for a POSIX shell, so ``eval "$(...)"`` and ``set -a; . ./file`` read them back as they are."""
    values: list[tuple[str, Any]] = [
        ("TYPE", found.connector_type),
        ("ENDPOINT", found.endpoint),
        ("DSN", found.dsn),
        *_flatten(found.config, ()),
    ]
    lines = []
    for name, value in values:
        if value is None:
            continue
        text = json.dumps(value) if not isinstance(value, str) else value
        lines.append(f"export {_NOT_NAME.sub('_', (prefix + name).upper())}={shlex.quote(text)}")
    return lines


def _flatten(config: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        here = (*path, str(key))
        if isinstance(value, Mapping):
            yield from _flatten(value, here)
        else:
            yield "CONFIG_" + "_".join(here), value


def credentials(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            help="Connector name or id (an id needs only connectors:use; a name is looked up "
            "with connectors:read).",
            metavar="NAME_OR_ID",
        ),
    ],
    output: Annotated[
        Format, typer.Option("--format", help="json: the checkout; env: export lines; dsn: the DSN.")
    ] = Format.JSON,
    prefix: Annotated[
        str, typer.Option("--prefix", help="The prefix of the variable names of --format env.")
    ] = "CONNECTOR_",
    tenant: TenantOpt = None,
) -> None:
    """Print a connector's credentials, secrets revealed: the one command that does (audited).

    For types connectord cannot proxy (sql, stream, file, vector...). The key needs connectors:use.

    [dim]psql "$(connectord connectors credentials orders-db --format dsn)"
    eval "$(connectord connectors credentials events --format env)"[/dim]
    """

    async def work() -> None:
        async with backend(ctx, tenant) as api:
            connector_id = ref if is_connector_id(ref) else (await find_connector(api, ref)).id
            found = await api.credentials(connector_id)
        if output is Format.DSN:
            if found.dsn is None:
                raise ValidationError(
                    f"a {found.connector_type} connector has no DSN: use --format json or --format env"
                )
            text = found.dsn
        elif output is Format.ENV:
            text = "\n".join(env_lines(found, prefix))
        else:
            text = json.dumps(found.to_dict(), indent=2)
        if stdout().is_terminal:
            stderr().print(
                "note: these are live secrets; this checkout is in the tenant's audit", style="dim"
            )
        stdout().out(text, highlight=False)

    run(ctx, work)
