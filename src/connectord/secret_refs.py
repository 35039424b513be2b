"""Secret references: a secret field that names where the value lives instead of holding it.

``env:NAME`` (a variable of the server's environment), ``file:PATH`` (a file under an
operator's folder) and ``aws-sm:ID[#KEY]`` (an AWS Secrets Manager secret, one key of it
when it holds JSON). The reference is what is stored (sealed, like any secret); the value
is read when a test runs, kept for a short while, and never stored.

Each kind is off until an operator allows it, and only for what they list: a reference
could otherwise make the server send one of its own secrets (its database password, an
AWS secret of another service) to an endpoint the tenant controls. ``{tenant}`` in an
allowed folder or name prefix is replaced by the tenant's id, so tenants can be kept to
their own. See ``docs/secrets.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectord.errors import ProbeError
from connectord.model import ErrorKind
from connectord.network.files import path_in_roots, tenant_roots
from connectord.settings import Settings

KINDS = ("env", "file", "aws-sm")
_REFERENCE = re.compile(r"^(env|file|aws-sm):(.+)$", re.S)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Largest value a reference may resolve to (a credential, not a document).
MAX_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference: its kind, target and (``aws-sm``) the JSON key."""

    kind: str
    target: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" + (f"#{self.key}" if self.key is not None else "")


def parse(value: object) -> Reference | None:
    """The reference a secret value spells, or ``None`` for a plain value."""
    if not isinstance(value, str):
        return None
    found = _REFERENCE.match(value)
    if found is None:
        return None
    kind, rest = found.groups()
    if kind == "aws-sm":
        target, sep, key = rest.partition("#")
        return Reference(kind, target, key if sep else None)
    return Reference(kind, rest)


@dataclass(frozen=True)
class ReferencePolicy:
    """What operators allow references to read (all empty: references are refused)."""

    #: Variable names, or prefixes ending in ``*`` (``CONNECTORD_SECRET_REF_ENV``).
    env: tuple[str, ...] = ()
    #: Folders ``file:`` references may read (``{tenant}`` allowed).
    folders: tuple[str, ...] = ()
    #: Secret names or ARNs, or prefixes ending in ``*`` (``{tenant}`` allowed).
    aws_sm: tuple[str, ...] = ()

    def check(self, ref: Reference, tenant_id: str | None) -> str | None:
        """Why ``ref`` is not allowed for this tenant, or ``None`` when it is."""
        if ref.kind == "env":
            if not _ENV_NAME.match(ref.target):
                return "env: takes a variable name (letters, digits, _)"
            if not _listed(ref.target, self.env, tenant_id):
                return (
                    f"{ref} is not allowed: CONNECTORD_SECRET_REF_ENV lists the variables references may read"
                )
            return None
        if ref.kind == "file":
            if not os.path.isabs(ref.target):
                return "file: takes an absolute path"
            try:  # the file roots' own check: symlinks and .. resolved first
                path_in_roots(ref.target, tenant_roots(self.folders, tenant_id))
            except ProbeError:
                return (
                    f"{ref} is not allowed: CONNECTORD_SECRET_REF_DIRS lists the folders references may read"
                )
            return None
        if not ref.target or (ref.key is not None and not ref.key):
            return "aws-sm: takes a secret name or ARN, then optionally #key"
        if not _listed(ref.target, self.aws_sm, tenant_id):
            return f"{ref} is not allowed: CONNECTORD_SECRET_REF_AWS_SM lists the secrets references may read"
        return None


def reference_policy(settings: Settings) -> ReferencePolicy:
    """The operator's policy, from the ``CONNECTORD_SECRET_REF_*`` settings."""
    return ReferencePolicy(
        env=tuple(settings.secret_ref_env),
        folders=tuple(settings.secret_ref_dirs),
        aws_sm=tuple(settings.secret_ref_aws_sm),
    )


def _listed(name: str, allowed: tuple[str, ...], tenant_id: str | None) -> bool:
    # {tenant} as in file roots: the tenant's id, or the entry left out without one.
    for entry in tenant_roots(allowed, tenant_id):
        if name == entry or (entry.endswith("*") and name.startswith(entry[:-1])):
            return True
    return False


def references_in(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Reference]:
    """Every reference in a secret tree, by dotted field name."""
    found: dict[str, Reference] = {}
    for name, value in tree.items():
        path = (*prefix, str(name))
        if isinstance(value, Mapping):
            found.update(references_in(value, path))
        else:
            ref = parse(value)
            if ref is not None:
                found[".".join(path)] = ref
    return found


def without_references(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``tree`` less its references (what is left to redact when resolving failed)."""
    kept: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            kept[name] = without_references(value)
        elif parse(value) is None:
            kept[name] = value
    return kept


@dataclass
class ReferenceResolver:
    """Reads references' values for tests, each kept ``ttl`` seconds (per process)."""

    policy: ReferencePolicy
    ttl: float = 30.0
    #: ``endpoint_url`` and region of the Secrets Manager client (moto in tests, a VPC endpoint).
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)

    async def resolve(self, tree: Mapping[str, Any], tenant_id: str | None) -> dict[str, Any]:
        """``tree`` with every reference replaced by its value; a reference that is not
        allowed or does not resolve is an ``invalid_config`` :class:`ProbeError` naming it."""
        resolved: dict[str, Any] = {}
        for name, value in tree.items():
            if isinstance(value, Mapping):
                resolved[name] = await self.resolve(value, tenant_id)
                continue
            ref = parse(value)
            resolved[name] = value if ref is None else await self._value(ref, tenant_id)
        return resolved

    async def _value(self, ref: Reference, tenant_id: str | None) -> str:
        # The policy is checked again at use: an operator may have narrowed it since.
        why = self.policy.check(ref, tenant_id)
        if why is not None:
            raise ProbeError(ErrorKind.INVALID_CONFIG, f"secret reference {why}")
        key = str(ref)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        value = await self._read(ref)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ProbeError(ErrorKind.INVALID_CONFIG, f"secret reference {ref} holds more than 64 KiB")
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (now, value)
        return value

    async def _read(self, ref: Reference) -> str:
        if ref.kind == "env":
            value = os.environ.get(ref.target)
            if value is None:
                raise ProbeError(ErrorKind.INVALID_CONFIG, f"secret reference {ref}: the variable is not set")
            return value
        if ref.kind == "file":
            try:
                text = await asyncio.to_thread(Path(ref.target).read_text)
            except (OSError, UnicodeError) as exc:
                reason = "no such file" if isinstance(exc, FileNotFoundError) else "cannot read the file"
                raise ProbeError(ErrorKind.INVALID_CONFIG, f"secret reference {ref}: {reason}") from None
            return text.rstrip("\r\n")  # files end with a newline; credentials do not
        return await self._read_aws_sm(ref)

    async def _read_aws_sm(self, ref: Reference) -> str:
        from aiobotocore.session import get_session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        config = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 2})
        try:
            async with get_session().create_client(
                "secretsmanager",
                region_name=self.aws_region,
                endpoint_url=self.aws_endpoint_url,
                config=config,
            ) as client:
                answer = await client.get_secret_value(SecretId=ref.target)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ProbeError(
                ErrorKind.INVALID_CONFIG, f"secret reference {ref}: AWS answered {code}"
            ) from None
        except (BotoCoreError, OSError) as exc:
            raise ProbeError(
                ErrorKind.INVALID_CONFIG,
                f"secret reference {ref}: AWS Secrets Manager failed ({type(exc).__name__})",
            ) from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise ProbeError(ErrorKind.INVALID_CONFIG, f"secret reference {ref}: the secret is not a string")
        if ref.key is None:
            return text
        try:
            value = json.loads(text)[ref.key]
        except (ValueError, KeyError, TypeError):
            raise ProbeError(
                ErrorKind.INVALID_CONFIG, f"secret reference {ref}: the secret has no JSON key {ref.key!r}"
            ) from None
        return str(value)
