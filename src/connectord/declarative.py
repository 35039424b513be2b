"""Declarative provisioning: ``connectord apply -f FILE`` and ``connectord export``.

The file format (``apiVersion: connectord/v1``)::

    apiVersion: connectord/v1
    connectors:
      - name: orders-db
        connector_type: sql                   # as in the REST API (``type`` is accepted too)
        endpoint: postgresql://app@db.internal:5432/orders
        config:
          password: ${ORDERS_DB_PASSWORD}     # a reference, never a value
        metadata: {team: data}
        status: disconnected                  # optional: disconnected or deprecated
        check_interval: 60                    # optional: seconds (0: off); absent: the server's
        failure_threshold: 5                  # optional; absent: the server's

A secret field (``writeOnly`` in the type's JSON Schema) holds a reference
only: ``${ENV_VAR}`` or ``file:PATH`` (relative to the file's folder), which
apply resolves where it runs, or ``ref+env:NAME``, ``ref+file:PATH``,
``ref+aws-sm:ID[#KEY]``, a secret reference the server keeps and resolves
itself (``docs/secrets.md``). Apply matches connectors by name and is
idempotent: it compares the public config, the endpoint, the metadata, the
status and the secrets. A secret is never read back: the server fingerprints
what the file's reference resolves to and apply compares that with the stored
secret's fingerprint (or compares the server references as written), so only
a changed secret is sent; where it cannot compare (the reference does not
resolve yet, or the key may not fingerprint) a set secret is re-sent only with
``update_secrets``. ``secret_fingerprints`` (written by export) says what the
secrets were when the file was written: a secret whose fingerprint still
matches is unchanged without resolving anything. A new connector, or a secret
not yet set, always sends it. A secret set on the server but no longer
declared is removed.

Everything goes through the SDK or the facade (any :class:`ConnectorsAPI`),
never the store. Nothing changes until the whole file is checked and every
needed secret reference resolves.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml

from connectord.definitions import check_check_interval, check_failure_threshold, destinations
from connectord.errors import FieldError, PermissionDeniedError, ValidationError
from connectord.model import UNSET, ConnectorInfo, ConnectorStatus, SecretState, Unset
from connectord.secret_refs import parse as parse_server_reference
from connectord.types.endpoint import EndpointRule, split_credentials

API_VERSION = "connectord/v1"
ENTRY_KEYS = (
    "name",
    "connector_type",
    "endpoint",
    "config",
    "metadata",
    "status",
    "check_interval",
    "failure_threshold",
    "secret_fingerprints",
)
#: The scheduling keys and the check of each (``None``, absent, is the server's default).
SCHEDULE_KEYS = {"check_interval": check_check_interval, "failure_threshold": check_failure_threshold}
#: The first name of ``connector_type`` in files; still read, so files written with it keep working.
TYPE_ALIAS = "type"
#: The statuses a file may declare: the ones a user sets and tests do not change.
DECLARABLE_STATUSES = (ConnectorStatus.DISCONNECTED.value, ConnectorStatus.DEPRECATED.value)
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_FILE_REF = "file:"
#: Before a reference the server keeps (``ref+env:NAME``): sent as written, resolved by the server.
SERVER_REF = "ref+"

Loc = tuple[str | int, ...]


class ConnectorsAPI(Protocol):
    """What apply and export need: the SDK's :class:`~connectord.client.AsyncClient`
    or the CLI's local (facade) backend."""

    def list_connectors(
        self, connector_type: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[ConnectorInfo]:
        """Every matching connector."""
        ...

    async def register_connector(
        self,
        name: str,
        connector_type: str,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        check_interval: float | None = None,
        failure_threshold: int | None = None,
    ) -> ConnectorInfo:
        """Register a connector."""
        ...

    async def update_connector(
        self,
        connector_id: str,
        name: str | None = None,
        endpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        if_version: int | None = None,
        *,
        check_interval: float | Unset | None = UNSET,
        failure_threshold: int | Unset | None = UNSET,
    ) -> ConnectorInfo | None:
        """Update a connector."""
        ...

    async def delete_connector(self, connector_id: str, if_version: int | None = None) -> bool:
        """Delete a connector."""
        ...

    async def connector_types(self) -> list[dict[str, Any]]:
        """Every connector type with its config JSON Schema."""
        ...

    async def secret_states(self, connector_id: str) -> dict[str, SecretState]:
        """Fingerprints (and references) of a connector's stored secrets."""
        ...

    async def fingerprint_secrets(self, connector_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """Fingerprints of candidate values as the connector's secrets."""
        ...


# --- secret fields from a JSON Schema -------------------------------------------------


def secret_patterns(schema: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """Paths of the ``writeOnly`` fields of a config schema; ``*`` stands for any key."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    found: set[tuple[str, ...]] = set()

    def walk(node: Any, path: tuple[str, ...], seen: frozenset[str]) -> None:
        if not isinstance(node, Mapping):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(defs.get(name), path, seen | {name})
        if node.get("writeOnly") is True:
            found.add(path)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key) or ():
                walk(sub, path, seen)
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, (*path, name), seen)
        for key in ("additionalProperties", "items"):
            if isinstance(node.get(key), Mapping):
                walk(node[key], (*path, "*"), seen)

    walk(schema, (), frozenset())
    return found


def is_secret(path: Iterable[str | int], patterns: set[tuple[str, ...]]) -> bool:
    """Whether a config path (``("auth", "client_secret")``) is a secret field."""
    parts = tuple(str(p) for p in path)
    return any(
        len(p) == len(parts) and all(a in ("*", b) for a, b in zip(p, parts, strict=True)) for p in patterns
    )


def schemas_by_type(types: Iterable[Mapping[str, Any]]) -> dict[str, set[tuple[str, ...]]]:
    """Secret patterns of every type, from ``connector_types()``."""
    return {t["name"]: secret_patterns(t.get("config_schema") or {}) for t in types}


def split_config(
    config: Mapping[str, Any], patterns: set[tuple[str, ...]], prefix: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, secrets)``: secret leaves go to ``secrets`` by dotted name; ``None`` values are dropped
    (the server stores no ``None``) and containers stay, as the server keeps them."""
    public: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for key, value in config.items():
        path = (*prefix, str(key))
        if is_secret(path, patterns):
            if value is not None:
                secrets[".".join(path)] = value
        elif isinstance(value, Mapping):
            sub_public, sub_secrets = split_config(value, patterns, path)
            public[key] = sub_public
            secrets.update(sub_secrets)
        elif value is not None:
            public[key] = value
    return public, secrets


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``"a.b"``, making the dicts on the way."""
    *head, last = dotted.split(".")
    node = tree
    for part in head:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


# --- the file -------------------------------------------------------------------------


@dataclass(slots=True)
class Declared:
    """One connector as the file declares it; secrets are references, by dotted field name."""

    index: int
    name: str
    connector_type: str
    endpoint: str | None
    config: dict[str, Any]
    secret_refs: dict[str, str]
    metadata: dict[str, Any]
    status: str | None
    #: The key the file used for the type: ``connector_type``, or its old name ``type``.
    type_key: str = "connector_type"
    #: ``check_interval`` and ``failure_threshold`` as declared (absent: ``None``).
    schedule: dict[str, Any] = field(default_factory=dict)
    #: ``secret_fingerprints`` as written by export: the secrets when the file was made.
    fingerprints: dict[str, str] = field(default_factory=dict)


def _err(loc: Loc, msg: str) -> FieldError:
    return FieldError(loc, msg)


def parse_document(text: str, types: Iterable[Mapping[str, Any]]) -> list[Declared]:
    """Check a file against the format and the types' schemas; :class:`ValidationError` lists
    every problem, each with its place in the file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(f"the file is not valid YAML{where}") from None
    if not isinstance(doc, Mapping):
        raise ValidationError("the file must be a mapping with apiVersion and connectors")
    errors: list[FieldError] = []
    if doc.get("apiVersion") != API_VERSION:
        errors.append(_err(("apiVersion",), f"must be {API_VERSION!r}"))
    for key in doc:
        if key not in ("apiVersion", "connectors"):
            errors.append(_err((str(key),), "unknown key"))
    entries = doc.get("connectors") or []
    if not isinstance(entries, list):
        errors.append(_err(("connectors",), "must be a list"))
        entries = []
    types = list(types)
    patterns = schemas_by_type(types)
    rules = {t["name"]: EndpointRule.from_description(t.get("endpoint") or {}) for t in types}
    declared: list[Declared] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        item = _parse_entry(index, entry, patterns, rules, errors)
        if item is None:
            continue
        if item.name in seen:
            errors.append(_err(("connectors", index, "name"), f"repeats connectors[{seen[item.name]}]"))
        seen[item.name] = index
        declared.append(item)
    if errors:
        raise ValidationError(f"the file has {len(errors)} problem(s)", errors)
    return declared


def _parse_entry(
    index: int,
    entry: Any,
    patterns: Mapping[str, set[tuple[str, ...]]],
    rules: Mapping[str, EndpointRule],
    errors: list[FieldError],
) -> Declared | None:
    loc: Loc = ("connectors", index)
    if not isinstance(entry, Mapping):
        errors.append(_err(loc, "must be a mapping"))
        return None
    before = len(errors)
    for key in entry:
        if key not in ENTRY_KEYS and key != TYPE_ALIAS:
            errors.append(_err((*loc, str(key)), f"unknown key; use {', '.join(ENTRY_KEYS)}"))
    type_key = TYPE_ALIAS if TYPE_ALIAS in entry and "connector_type" not in entry else "connector_type"
    if TYPE_ALIAS in entry and "connector_type" in entry:
        errors.append(_err((*loc, TYPE_ALIAS), "is the old name of connector_type: give connector_type only"))
    name, ctype = entry.get("name"), entry.get(type_key)
    if not isinstance(name, str) or not name:
        errors.append(_err((*loc, "name"), "is required (a string)"))
    if not isinstance(ctype, str) or ctype not in patterns:
        errors.append(_err((*loc, type_key), f"must be one of {', '.join(sorted(patterns))}"))
    endpoint = entry.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        errors.append(_err((*loc, "endpoint"), "must be a string"))
    elif isinstance(endpoint, str) and "://" in endpoint and _has_password(endpoint):
        errors.append(_err((*loc, "endpoint"), "carries a password; put it in config.password as ${ENV_VAR}"))
    elif isinstance(endpoint, str) and isinstance(ctype, str) and ctype in rules:
        try:  # the rule the server publishes: a refused endpoint fails the file before any write
            split_credentials(endpoint, rules[ctype], ctype)
        except ValidationError as exc:
            errors.extend(_err((*loc, *fe.loc), fe.msg) for fe in exc.errors)
    config, metadata = entry.get("config") or {}, entry.get("metadata") or {}
    for key, value in (("config", config), ("metadata", metadata)):
        if not isinstance(value, Mapping):
            errors.append(_err((*loc, key), "must be a mapping"))
    status = entry.get("status")
    if status is not None and status not in DECLARABLE_STATUSES:
        errors.append(_err((*loc, "status"), f"must be one of {', '.join(DECLARABLE_STATUSES)} or absent"))
    schedule: dict[str, Any] = {}
    for key, check in SCHEDULE_KEYS.items():
        try:
            schedule[key] = check(entry.get(key))
        except ValidationError as exc:
            errors.extend(_err((*loc, *fe.loc), fe.msg) for fe in exc.errors)
    fingerprints = entry.get("secret_fingerprints") or {}
    if not isinstance(fingerprints, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fingerprints.items()
    ):
        errors.append(_err((*loc, "secret_fingerprints"), "must map field names to fingerprints (strings)"))
    if len(errors) > before:
        return None
    assert isinstance(name, str)  # checked above
    assert isinstance(ctype, str)
    public, refs = split_config(config, patterns[ctype])
    for dotted, ref in refs.items():
        if not _is_reference(ref):
            errors.append(
                _err(
                    (*loc, "config", *dotted.split(".")),
                    "is a secret: write a reference (${ENV_VAR}, file:PATH or ref+env:NAME), never the value",
                )
            )
    return Declared(
        index,
        name,
        ctype,
        endpoint,
        public,
        refs,
        dict(metadata),
        status,
        type_key,
        schedule,
        dict(fingerprints),
    )


def _has_password(endpoint: str) -> bool:
    try:
        return urlsplit(endpoint).password is not None
    except ValueError:
        return False


def _is_reference(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith(SERVER_REF):
        return parse_server_reference(value[len(SERVER_REF) :]) is not None
    return bool(_ENV_REF.match(value)) or value.startswith(_FILE_REF)


def resolve_reference(ref: str, base_dir: Path) -> str:
    """The value a reference points to: an environment variable, or a file's content
    (one trailing newline removed), or for ``ref+...`` the server reference itself.
    :class:`ValidationError` when it does not resolve."""
    if ref.startswith(SERVER_REF):
        return ref[len(SERVER_REF) :]
    env = _ENV_REF.match(ref)
    if env:
        value = os.environ.get(env.group(1))
        if value is None:
            raise ValidationError(f"environment variable {env.group(1)} is not set")
        return value
    path = Path(ref[len(_FILE_REF) :]).expanduser()
    path = path if path.is_absolute() else base_dir / path
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    return text[:-1] if text.endswith("\n") else text


# --- the plan -------------------------------------------------------------------------

CREATE, UPDATE, DELETE, UNCHANGED = "create", "update", "delete", "unchanged"


@dataclass(slots=True)
class Change:
    """What apply does to one connector, and why (``notes``: human lines, never a secret)."""

    action: str
    name: str
    connector_type: str
    notes: list[str] = field(default_factory=list)
    declared: Declared | None = None
    current: ConnectorInfo | None = None
    #: Dotted names of the secrets to send (resolved at apply time) and to remove.
    send: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    updates: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    """Every change, in file order, then the deletions; ``undeclared`` are kept (no prune)."""

    changes: list[Change]
    undeclared: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many changes have this action."""
        return sum(1 for c in self.changes if c.action == action)

    @property
    def has_changes(self) -> bool:
        """Whether apply would change anything."""
        return any(c.action != UNCHANGED for c in self.changes)

    def summary(self) -> str:
        """One line: how many of each."""
        parts = [f"{self.count(a)} to {a}" for a in (CREATE, UPDATE, DELETE) if self.count(a)]
        unchanged = self.count(UNCHANGED)
        if not parts:
            return f"Nothing to change: {unchanged} unchanged."
        return "Plan: " + ", ".join(parts) + (f", {unchanged} unchanged." if unchanged else ".")


@dataclass(slots=True)
class _Known:
    """What apply learnt of one connector's stored secrets: which are unchanged."""

    unchanged: set[str] = field(default_factory=set)
    #: Secrets it could not compare (a reference that does not resolve here, no write scope).
    unknown: set[str] = field(default_factory=set)


async def _learn(api: ConnectorsAPI, d: Declared, current: ConnectorInfo, base_dir: Path | None) -> _Known:
    """Compare the declared secrets that are set with the stored ones, by fingerprint."""
    known = _Known()
    wanted = sorted(set(d.secret_refs) & set(current.secret_fields))
    if not wanted:
        return known
    states = await api.secret_states(current.id)
    candidates: dict[str, str] = {}
    for name in wanted:
        ref, state = d.secret_refs[name], states.get(name)
        if state is None:
            continue
        if ref.startswith(SERVER_REF):  # a reference is compared as written, not fingerprinted
            if state.reference == ref[len(SERVER_REF) :]:
                known.unchanged.add(name)
        elif d.fingerprints.get(name) == state.fingerprint:
            known.unchanged.add(name)  # as the file was made: nothing to resolve
        elif base_dir is None:
            known.unknown.add(name)
        else:
            try:
                candidates[name] = resolve_reference(ref, base_dir)
            except ValidationError:
                known.unknown.add(name)
    if candidates:
        try:
            made = await api.fingerprint_secrets(current.id, candidates)
        except PermissionDeniedError:
            known.unknown.update(candidates)
        else:
            known.unchanged.update(n for n in candidates if made.get(n) == states[n].fingerprint)
    return known


async def make_plan(
    api: ConnectorsAPI,
    declared: list[Declared],
    *,
    prune: bool = False,
    update_secrets: bool = False,
    base_dir: Path | None = None,
) -> Plan:
    """Compare the file with what the tenant has. With ``base_dir`` (the file's folder), the
    secrets' references are resolved and fingerprinted by the server to find the changed ones."""
    current = {c.name: c async for c in api.list_connectors()}
    changes = []
    for d in declared:
        info = current.get(d.name)
        known = None if info is None or update_secrets else await _learn(api, d, info, base_dir)
        changes.append(_compare(d, info, update_secrets, known))
    wanted = {d.name for d in declared}
    extra = [c for name, c in current.items() if name not in wanted]
    if prune:
        changes += [
            Change(DELETE, c.name, c.connector_type, ["not in the file (--prune)"], current=c) for c in extra
        ]
        return Plan(changes)
    return Plan(changes, [c.name for c in extra])


def _compare(
    d: Declared, current: ConnectorInfo | None, update_secrets: bool, known: _Known | None
) -> Change:
    if current is None:
        notes = [f"secret {s}: set" for s in sorted(d.secret_refs)]
        if d.status:
            notes.append(f"status: {d.status}")
        return Change(CREATE, d.name, d.connector_type, notes, d, send=sorted(d.secret_refs))
    change = Change(UPDATE, d.name, d.connector_type, declared=d, current=current)
    if current.connector_type != d.connector_type:
        raise ValidationError(
            f"connector {d.name!r} is a {current.connector_type} connector; the file says {d.connector_type}",
            [
                _err(
                    ("connectors", d.index, d.type_key),
                    "cannot change; delete the connector or use a new name",
                )
            ],
        )
    if (d.endpoint or None) != current.endpoint:
        change.updates["endpoint"] = d.endpoint or ""
        change.notes.append(f"endpoint: {current.endpoint or '(none)'} -> {d.endpoint or '(none)'}")
    if d.metadata != current.metadata:
        change.updates["metadata"] = d.metadata
        change.notes.append(f"metadata: {_diff_keys(current.metadata, d.metadata)}")
    if d.config != current.config:
        change.notes.append(f"config: {_diff_keys(current.config, d.config)}")
    have = set(current.secret_fields)
    # Secrets never follow a change of destination on their own (docs/secrets.md): send them.
    moved = destinations(d.endpoint, d.config) != destinations(current.endpoint, current.config)
    known = known or _Known(unknown=set(d.secret_refs) & have)
    # Compared and unchanged: kept; not comparable: kept unless told (the old rule).
    kept = known.unchanged | known.unknown
    change.send = sorted(
        s for s in d.secret_refs if update_secrets or moved or s not in have or s not in kept
    )
    change.remove = sorted(have - set(d.secret_refs))
    change.notes += [f"secret {s}: {_why_sent(s, have, known, moved, update_secrets)}" for s in change.send]
    change.notes += [f"secret {s}: removed" for s in change.remove]
    if d.config != current.config or change.send or change.remove:
        change.updates["config"] = d.config
    status = _wanted_status(d.status, current.status)
    if status is not None:
        change.updates["status"] = status
        change.notes.append(f"status: {current.status} -> {status}")
    for key in SCHEDULE_KEYS:  # not declared means the server's default
        wanted, have_value = d.schedule.get(key), getattr(current, key)
        if wanted != have_value:
            change.updates[key] = wanted
            change.notes.append(f"{key}: {_or_default(have_value)} -> {_or_default(wanted)}")
    if not change.updates:
        change.action = UNCHANGED
    return change


def _why_sent(name: str, have: set[str], known: _Known, moved: bool, update_secrets: bool) -> str:
    if name not in have:
        return "set"
    if update_secrets:
        return "re-sent"
    if moved:
        return "re-sent (the destination changes)"
    return "changed" if name not in known.unknown else "re-sent"


def _or_default(value: object) -> str:
    return "(default)" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _wanted_status(declared: str | None, current: str) -> str | None:
    if declared is not None:
        return declared if declared != current else None
    # Not declared means active: a paused or deprecated connector is brought back.
    return ConnectorStatus.REGISTERED.value if current in DECLARABLE_STATUSES else None


def _diff_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k}" for k in changed]
    return " ".join(parts) or "changed"


def check_references(plan: Plan, base_dir: Path) -> dict[str, dict[str, str]]:
    """Resolve every secret the plan sends, before anything changes: ``{name: {field: value}}``."""
    resolved: dict[str, dict[str, str]] = {}
    errors: list[FieldError] = []
    for change in plan.changes:
        if change.declared is None:
            continue
        for dotted in change.send:
            try:
                value = resolve_reference(change.declared.secret_refs[dotted], base_dir)
            except ValidationError as exc:
                loc: Loc = ("connectors", change.declared.index, "config", *dotted.split("."))
                errors.append(_err(loc, exc.message))
                continue
            resolved.setdefault(change.name, {})[dotted] = value
    if errors:
        raise ValidationError(f"{len(errors)} secret reference(s) do not resolve", errors)
    return resolved


async def apply_plan(api: ConnectorsAPI, plan: Plan, secrets: Mapping[str, Mapping[str, str]]) -> None:
    """Make the changes: creates and updates in file order, then deletions.

    Updates and deletions carry the version the plan read, so a connector that
    changed meanwhile raises :class:`~connectord.errors.VersionConflictError`.
    """
    for change in plan.changes:
        if change.action == CREATE:
            await _create(api, change, secrets.get(change.name, {}))
        elif change.action == UPDATE:
            await _update(api, change, secrets.get(change.name, {}))
    for change in plan.changes:
        if change.action == DELETE and change.current is not None:
            await api.delete_connector(change.current.id, if_version=change.current.version)


def with_secrets(public: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config with each value set at its dotted path (``None`` removes a secret)."""
    config = json.loads(json.dumps(public))  # a deep copy of plain JSON data
    for dotted, value in values.items():
        set_path(config, dotted, value)
    return dict(config)


async def _create(api: ConnectorsAPI, change: Change, values: Mapping[str, str]) -> None:
    d = change.declared
    assert d is not None
    schedule = {k: v for k, v in d.schedule.items() if v is not None}
    info = await api.register_connector(
        d.name, d.connector_type, d.endpoint, with_secrets(d.config, values), d.metadata, **schedule
    )
    if d.status:
        await api.update_connector(info.id, status=d.status, if_version=info.version)


async def _update(api: ConnectorsAPI, change: Change, values: Mapping[str, str]) -> None:
    current = change.current
    assert current is not None
    updates = dict(change.updates)
    if "config" in updates:
        updates["config"] = with_secrets(updates["config"], {**values, **dict.fromkeys(change.remove)})
    await api.update_connector(current.id, **updates, if_version=current.version)


# --- export ---------------------------------------------------------------------------


def env_name(connector: str, dotted: str, taken: set[str]) -> str:
    """The environment variable an exported secret refers to, e.g. ``ORDERS_DB_PASSWORD``."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", f"{connector}_{dotted}").strip("_").upper()
    base = base if base and not base[0].isdigit() else f"C_{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


async def export_document(api: ConnectorsAPI, connector_type: str | None = None) -> dict[str, Any]:
    """The tenant's connectors in the apply format: each secret as a ``${NAME_FIELD}`` reference,
    or ``ref+...`` where the server keeps a reference, and each one's fingerprint."""
    taken: set[str] = set()
    entries: list[dict[str, Any]] = []
    async for info in api.list_connectors(connector_type=connector_type):
        entry: dict[str, Any] = {"name": info.name, "connector_type": info.connector_type}
        if info.endpoint:
            entry["endpoint"] = info.endpoint
        states = await api.secret_states(info.id) if info.secret_fields else {}
        refs = {
            s: SERVER_REF + ref
            if (ref := _reference_of(states, s))
            else "${" + env_name(info.name, s, taken) + "}"
            for s in info.secret_fields
        }
        config = with_secrets(info.config, refs)
        if config:
            entry["config"] = config
        if info.metadata:
            entry["metadata"] = info.metadata
        if info.status in DECLARABLE_STATUSES:
            entry["status"] = info.status
        entry |= {k: getattr(info, k) for k in SCHEDULE_KEYS if getattr(info, k) is not None}
        if states:
            entry["secret_fingerprints"] = {s: state.fingerprint for s, state in states.items()}
        entries.append(entry)
    return {"apiVersion": API_VERSION, "connectors": entries}


def _reference_of(states: Mapping[str, SecretState], name: str) -> str | None:
    state = states.get(name)
    return state.reference if state is not None else None


def dump_document(doc: Mapping[str, Any]) -> str:
    """YAML text of an exported document, headed by the variables its secrets refer to."""
    names = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", json.dumps(doc))))
    header = "# connectord export: apply with `connectord apply -f FILE`.\n"
    if names:
        header += "# Secrets are references; set these variables before creating the connectors again:\n"
        header += "".join(f"#   {n}\n" for n in names)
    return header + yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, default_flow_style=False)
