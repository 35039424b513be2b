"""Operator work: tenants, API keys and secret-key rotation, over the facade's store."""

from __future__ import annotations

import hashlib
import secrets as _stdlib_secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connectord.errors import AuthenticationError, NotFoundError, ValidationError
from connectord.errors import FieldError as _FieldError
from connectord.facade import ConnectorsFacade
from connectord.keycache import KeyCache
from connectord.model import (
    TENANT_SCOPES,
    WHOLE_TENANT,
    AuditEvent,
    Reach,
    Scope,
    TenantRecord,
    new_id,
    utcnow,
)
from connectord.notify.webhooks import open_secret, seal_secret
from connectord.store.base import ApiKeyRecord, Store
from connectord.validation import check_name, is_id

#: Every scope a key may be given.
SCOPES: tuple[Scope, ...] = tuple(Scope)
__all__ = [
    "KEY_PREFIX",
    "MAX_REACH_IDS",
    "MAX_SELECTOR_PAIRS",
    "MAX_SELECTOR_TEXT",
    "SCOPES",
    "TENANT_SCOPES",
    "Admin",
    "NewKey",
    "Principal",
    "RotationReport",
    "hash_key",
]
KEY_PREFIX = "cdk_"
#: Bounds of a narrowed key's reach (docs/use.md): ids listed, selector pairs, and the
#: length of a selector's key or value.
MAX_REACH_IDS = 1000
MAX_SELECTOR_PAIRS = 16
MAX_SELECTOR_TEXT = 200


def hash_key(api_key: str) -> str:
    """The stored form of a key. Keys are 256 random bits, so a plain SHA-256 suffices
    (no slow hash needed: there is nothing to brute-force)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, scopes and reach of an API key."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    #: The connectors the key covers; the whole tenant unless the key was narrowed.
    reach: Reach = WHOLE_TENANT

    @property
    def actor(self) -> str:
        """The audit actor name for this key."""
        return f"key:{self.key_id}"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: the only time its value is shown."""

    key_id: str
    tenant_id: str
    api_key: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    reach: Reach = WHOLE_TENANT


@dataclass(slots=True)
class RotationReport:
    """What a rotation did."""

    primary_key_id: str
    reencrypted: int = 0
    unused_key_ids: list[str] = field(default_factory=list)
    dropped_key_ids: list[str] = field(default_factory=list)


class Admin:
    """Tenants, keys and rotation. Every key and tenant change is audited."""

    def __init__(self, facade: ConnectorsFacade) -> None:
        self.facade = facade
        #: Recent key lookups: the revocation bound is the settings' key_cache_ttl (keycache.py).
        self.keys: KeyCache[Principal] = KeyCache(facade.settings.key_cache_ttl)

    async def _started_store(self) -> Store:
        await self.facade.start()  # idempotent: the facade starts its store once
        return self.facade.store

    async def create_tenant(self, name: str, *, actor: str = "cli") -> tuple[TenantRecord, NewKey]:
        """A new tenant and its first key (read, write and test scopes)."""
        store = await self._started_store()
        tenant = TenantRecord(new_id(), check_name(name), utcnow())
        await store.create_tenant(
            tenant, self._audit(tenant.id, actor, "tenant.create", {"name": tenant.name})
        )
        key = await self.create_key(tenant.id, name="initial", scopes=TENANT_SCOPES, actor=actor)
        return tenant, key

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        """A tenant by id."""
        store = await self._started_store()
        return await store.get_tenant(tenant_id)

    async def list_tenants(self) -> list[TenantRecord]:
        """Every tenant."""
        store = await self._started_store()
        return await store.list_tenants()

    async def set_checkout(self, tenant_id: str, enabled: bool, *, actor: str = "cli") -> TenantRecord:
        """Turn the tenant's credential checkout on or off (``docs/use.md``); audited as
        ``tenant.checkout``. :class:`NotFoundError` if there is no such tenant."""
        store = await self._started_store()
        audit = self._audit(tenant_id, actor, "tenant.checkout", {"checkout_enabled": enabled})
        if not await store.set_checkout(tenant_id, enabled, audit):
            raise NotFoundError("no such tenant")
        tenant = await store.get_tenant(tenant_id)
        if tenant is None:  # deleted in between: as if it never was
            raise NotFoundError("no such tenant")
        return tenant

    async def create_key(
        self,
        tenant_id: str,
        *,
        name: str = "key",
        scopes: tuple[str, ...] = TENANT_SCOPES,
        actor: str = "cli",
        connector_ids: Sequence[str] | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> NewKey:
        """A new API key for a tenant; the value is returned once and stored hashed.

        ``connector_ids`` and ``selector`` narrow the key to some connectors (``docs/use.md``):
        those ids (each a connector of the tenant now), and those whose metadata holds every
        ``key=value`` pair of the selector; given both, either. Without them the key covers
        the whole tenant. An ``admin`` key is never narrowed.
        """
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValidationError(
                "invalid scopes", [_FieldError(("scopes",), f"each must be one of {', '.join(SCOPES)}")]
            )
        reach = _check_reach(connector_ids, selector)
        # Stored as plain strings, whichever way the caller spelled them.
        given = tuple(str(scope) for scope in scopes)
        if reach.narrowed and Scope.ADMIN in given:
            raise ValidationError(
                "an admin key cannot be narrowed",
                [_FieldError(("scopes",), "admin manages tenants, not connectors: give it no reach")],
            )
        store = await self._started_store()
        if await store.get_tenant(tenant_id) is None:
            raise NotFoundError("no such tenant")
        await _check_ids_exist(store, tenant_id, reach)
        value = KEY_PREFIX + _stdlib_secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            new_id(), tenant_id, check_name(name), hash_key(value), given, utcnow(), reach=reach
        )
        details: dict[str, object] = {"key_id": record.id, "scopes": list(given)}
        if reach.narrowed:
            details["reach"] = reach.to_dict()
        await store.create_api_key(tenant_id, record, self._audit(tenant_id, actor, "key.create", details))
        return NewKey(record.id, tenant_id, value, record.scopes, reach)

    async def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """A tenant's keys (hashes only)."""
        store = await self._started_store()
        return await store.list_api_keys(tenant_id)

    async def revoke_key(self, tenant_id: str, key_id: str, *, actor: str = "cli") -> bool:
        """Revoke a key; ``False`` if the tenant has no such active key."""
        store = await self._started_store()
        audit = self._audit(tenant_id, actor, "key.revoke", {"key_id": key_id})
        revoked = await store.revoke_api_key(tenant_id, key_id, utcnow(), audit)
        self.keys.forget(key_id)
        return revoked

    async def authenticate(self, api_key: str | None) -> Principal:
        """The principal of a key; :class:`AuthenticationError` if it is missing, unknown or revoked."""
        if not api_key or not api_key.startswith(KEY_PREFIX):
            raise AuthenticationError("a valid API key is required")
        key_hash = hash_key(api_key)
        cached = self.keys.get(key_hash)
        if cached is not None:
            return cached
        store = await self._started_store()
        record = await store.find_api_key(key_hash)
        if record is None:
            raise AuthenticationError("a valid API key is required")
        principal = Principal(record.tenant_id, record.id, frozenset(record.scopes), record.reach)
        self.keys.put(key_hash, record.id, principal)
        return principal

    async def rotate_secrets(self, *, new_key: bool = False, actor: str = "cli") -> RotationReport:
        """Re-encrypt every secret under the newest key.

        With a key file (the embedded default), ``new_key`` adds a fresh key first
        and keys left unused are dropped from the file. With ``CONNECTORD_SECRET_KEY``
        the operator adds the new key to the ring (last) before, and removes the
        reported unused keys after.
        """
        facade = self.facade
        store = await self._started_store()
        if new_key:
            if facade.keyring.path is None:
                raise ValidationError(
                    "cannot add a key to CONNECTORD_SECRET_KEY; append the new key to the variable instead"
                )
            facade.keyring = facade.keyring.with_new_key()
        ring = facade.keyring
        report = RotationReport(ring.primary_id)
        # Every tenant id holding a secret, not only those with a record: the library's
        # tenants have none, and their secrets would be lost when the old key is dropped.
        for tenant_id in await store.sealed_tenant_ids():
            rotated = 0
            for connector_id, sealed in await store.list_secrets(tenant_id):
                if sealed.key_id == ring.primary_id:
                    continue
                tree = ring.open_tree(sealed, tenant_id, connector_id)
                resealed = ring.seal_tree(tree, tenant_id, connector_id)
                # A concurrent update wrote a fresh secret under the primary already: fine.
                if await store.replace_secret(tenant_id, connector_id, sealed, resealed):
                    rotated += 1
            # Webhooks' signing secrets are sealed by the same ring (connectord.notify.webhooks).
            for webhook_id, sealed in await store.list_webhook_secrets(tenant_id):
                if sealed.key_id == ring.primary_id:
                    continue
                signing = open_secret(ring, sealed, tenant_id, webhook_id)
                resealed = seal_secret(ring, signing, tenant_id, webhook_id)
                if await store.replace_webhook_secret(tenant_id, webhook_id, sealed, resealed):
                    rotated += 1
            if rotated:
                await store.append_audit(
                    self._audit(
                        tenant_id,
                        actor,
                        "secrets.rotate",
                        {"reencrypted": rotated, "key_id": ring.primary_id},
                    )
                )
            report.reencrypted += rotated
        usage = await store.secret_key_usage()
        report.unused_key_ids = [k for k in ring.key_ids if k != ring.primary_id and not usage.get(k)]
        if ring.path is not None and report.unused_key_ids:
            facade.keyring = ring.without(report.unused_key_ids)
            report.dropped_key_ids = report.unused_key_ids
        return report

    @staticmethod
    def _audit(tenant_id: str, actor: str, action: str, details: dict[str, object]) -> AuditEvent:
        return AuditEvent(new_id(), tenant_id, actor, action, None, utcnow(), dict(details))


def _check_reach(connector_ids: Sequence[str] | None, selector: Mapping[str, str] | None) -> Reach:
    """The reach of a new key, checked: 1 to :data:`MAX_REACH_IDS` connector ids, and a
    selector of 1 to :data:`MAX_SELECTOR_PAIRS` pairs of non-empty text (a key may not
    hold ``=``, so ``team=payments`` reads one way only). Both ``None``: the whole tenant."""
    problems: list[_FieldError] = []
    ids: frozenset[str] | None = None
    if connector_ids is not None:
        if isinstance(connector_ids, str) or not 1 <= len(connector_ids) <= MAX_REACH_IDS:
            problems.append(
                _FieldError(("connector_ids",), f"must be a list of 1 to {MAX_REACH_IDS} connector ids")
            )
        else:
            problems += [
                _FieldError(("connector_ids", i), "is not a connector id")
                for i, cid in enumerate(connector_ids)
                if not is_id(cid)
            ]
            ids = frozenset(connector_ids)
    pairs: tuple[tuple[str, str], ...] | None = None
    if selector is not None:
        if not isinstance(selector, Mapping) or not 1 <= len(selector) <= MAX_SELECTOR_PAIRS:
            problems.append(
                _FieldError(("selector",), f"must be an object of 1 to {MAX_SELECTOR_PAIRS} key=value pairs")
            )
        else:
            problems += _selector_problems(selector)
            pairs = tuple(sorted(selector.items()))
    if problems:
        raise ValidationError("invalid reach", problems)
    return Reach(ids, pairs)


def _selector_problems(selector: Mapping[str, str]) -> list[_FieldError]:
    problems: list[_FieldError] = []
    for key, value in selector.items():
        where = ("selector", str(key))
        if not isinstance(key, str) or not _selector_text(key) or "=" in key:
            problems.append(
                _FieldError(where, f"a key must be 1-{MAX_SELECTOR_TEXT} printable characters without '='")
            )
        elif not isinstance(value, str) or not _selector_text(value):
            problems.append(
                _FieldError(where, f"a value must be text of 1-{MAX_SELECTOR_TEXT} printable characters")
            )
    return problems


def _selector_text(text: str) -> bool:
    return 1 <= len(text) <= MAX_SELECTOR_TEXT and text.isprintable()


async def _check_ids_exist(store: Store, tenant_id: str, reach: Reach) -> None:
    """Refuse ids the tenant has no connector with: ids are the server's, never guessed
    ahead, so an unknown one is a mistake (or another tenant's id)."""
    missing = [
        cid for cid in sorted(reach.connector_ids or ()) if await store.get_connector(tenant_id, cid) is None
    ]
    if missing:
        raise ValidationError(
            "invalid reach",
            [
                _FieldError(("connector_ids",), f"no connector with id {cid} in this tenant")
                for cid in missing
            ],
        )
