"""Reading configs and secrets from the command line.

A secret is read from a hidden prompt (``--secret-prompt FIELD``), a file
(``--secret-file FIELD=PATH``) or an environment variable (``--secret-env
FIELD=VAR``), never from a flag value: those land in shell history and in
``ps`` output. A secret inside ``--config`` or in an endpoint URL is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import yaml

from connectord.declarative import is_secret, split_config

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config", help="Config as a JSON object (no secrets in it: see --secret-*).", metavar="JSON"
    ),
]
ConfigFileOpt = Annotated[
    Path | None, typer.Option("--config-file", help="Config from a JSON or YAML file.", dir_okay=False)
]
MetadataOpt = Annotated[
    str | None, typer.Option("--metadata", help="Free-form labels as a JSON object.", metavar="JSON")
]
MetadataFileOpt = Annotated[
    Path | None, typer.Option("--metadata-file", help="Labels from a JSON or YAML file.", dir_okay=False)
]
SecretEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-env", metavar="FIELD=VAR", help="Set a secret field from an environment variable."
    ),
]
SecretFileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-file",
        metavar="FIELD=PATH",
        help="Set a secret field from a file (one trailing newline is dropped).",
    ),
]
SecretPromptOpt = Annotated[
    list[str] | None,
    typer.Option("--secret-prompt", metavar="FIELD", help="Ask for a secret field (hidden input)."),
]
TypeFilterOpt = Annotated[
    str | None, typer.Option("--connector-type", help="Only connectors of this type.", metavar="TYPE")
]
# ``--type`` was the flag's first name; kept, hidden, so scripts that use it still work.
LegacyTypeOpt = Annotated[
    str | None, typer.Option("--type", hidden=True, help="Deprecated: use --connector-type.")
]


def connector_type_flag(value: str | None, legacy: str | None, *, required: bool = False) -> str | None:
    """The ``--connector-type`` value, or the deprecated ``--type``'s with a note on stderr."""
    if legacy is not None:
        if value is not None and value != legacy:
            raise typer.BadParameter(
                "give --connector-type only (--type is its old name)", param_hint="--type"
            )
        typer.echo(
            "note: --type is deprecated; use --connector-type (the name the REST API and files use)",
            err=True,
        )
        value = legacy
    if value is None and required:
        raise typer.BadParameter(
            "a connector type is required (see: connectord types)", param_hint="--connector-type"
        )
    return value


def read_object(text: str | None, path: Path | None, flag: str) -> dict[str, Any] | None:
    """A JSON object from ``--FLAG JSON`` or ``--FLAG-file PATH`` (JSON or YAML)."""
    if text is not None and path is not None:
        raise typer.BadParameter(f"give --{flag} or --{flag}-file, not both", param_hint=f"--{flag}")
    if text is None and path is None:
        return None
    hint = f"--{flag}" if text is not None else f"--{flag}-file"
    try:
        raw = text if text is not None else path.read_text()  # type: ignore[union-attr]
        value = json.loads(raw) if text is not None else yaml.safe_load(raw)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=hint) from None
    except (ValueError, yaml.YAMLError):
        raise typer.BadParameter(
            "is not valid JSON" if text is not None else "is not JSON or YAML", param_hint=hint
        ) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=hint)
    return value


def _pair(item: str, flag: str) -> tuple[str, str]:
    field, sep, value = item.partition("=")
    if not sep or not field or not value:
        raise typer.BadParameter(f"expected FIELD=VALUE, got {item.split('=')[0]!r}=...", param_hint=flag)
    return field.strip(), value.strip()


def read_secrets(
    files: list[str] | None, envs: list[str] | None, prompts: list[str] | None
) -> dict[str, str]:
    """Secret values by dotted field name, from files, environment variables and prompts."""
    values: dict[str, str] = {}
    for item in files or ():
        field, path = _pair(item, "--secret-file")
        try:
            text = Path(path).expanduser().read_text()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint="--secret-file"
            ) from None
        values[field] = text[:-1] if text.endswith("\n") else text
    for item in envs or ():
        field, var = _pair(item, "--secret-env")
        if var not in os.environ:
            raise typer.BadParameter(f"environment variable {var} is not set", param_hint="--secret-env")
        values[field] = os.environ[var]
    for field in prompts or ():
        values[field] = typer.prompt(field, hide_input=True, err=True)
    return values


def check_secret_fields(fields: list[str], patterns: set[tuple[str, ...]], connector_type: str) -> None:
    """Refuse a --secret-* for a field the type does not keep secret (it would be stored in clear)."""
    for field in fields:
        if not is_secret(field.split("."), patterns):
            known = ", ".join(sorted(".".join(p) for p in patterns)) or "none"
            raise typer.BadParameter(
                f"{field} is not a secret field of {connector_type} connectors (secret fields: {known}); "
                "put other fields in --config",
                param_hint="--secret-*",
            )


def check_no_inline_secrets(config: Mapping[str, Any], patterns: set[tuple[str, ...]], flag: str) -> None:
    """Refuse secret values in a config given as a flag value."""
    _, secrets = split_config(config, patterns)
    if secrets:
        names = ", ".join(sorted(secrets))
        raise typer.BadParameter(
            f"{names} is a secret: pass it with --secret-prompt, --secret-env or --secret-file, "
            "never on the command line",
            param_hint=flag,
        )


def check_endpoint(endpoint: str | None) -> None:
    """Refuse an endpoint URL that carries a password."""
    if endpoint and "://" in endpoint:
        try:
            password = urlsplit(endpoint).password
        except ValueError:
            return  # the server explains a malformed URL better
        if password is not None:
            raise typer.BadParameter(
                "carries a password, which would land in shell history; leave it out and use "
                "--secret-prompt password (or --secret-env / --secret-file)",
                param_hint="--endpoint",
            )
