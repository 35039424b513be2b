"""The API key cache (``connectord.keycache``) and its revocation bound: the process that
revokes a key refuses it at once, every other process within the TTL (docs/security.md).

Two :class:`Admin` objects on one store stand for two replicas (SQLite and PostgreSQL);
a fake clock replaces waiting. The same bound across real processes is tested by
``tests/test_operations_recipes.py::test_the_api_key_recipe_runs_as_written``."""

from __future__ import annotations

import pytest

from connectord.admin import Admin, Principal
from connectord.errors import AuthenticationError
from connectord.facade import ConnectorsFacade
from connectord.keycache import KeyCache
from connectord.model import WHOLE_TENANT


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _principal(key_id: str) -> Principal:
    return Principal("tenant", key_id, frozenset({"connectors:read"}), WHOLE_TENANT)


def test_an_entry_lives_ttl_seconds() -> None:
    clock = Clock()
    cache: KeyCache[Principal] = KeyCache(2.0, clock=clock)
    cache.put("h1", "k1", _principal("k1"))
    clock.now += 1.999
    assert cache.get("h1") == _principal("k1")
    clock.now += 0.001
    assert cache.get("h1") is None
    assert len(cache) == 0


def test_a_ttl_of_zero_caches_nothing() -> None:
    cache: KeyCache[Principal] = KeyCache(0)
    cache.put("h1", "k1", _principal("k1"))
    assert cache.get("h1") is None


def test_forget_drops_every_entry_of_the_key() -> None:
    cache: KeyCache[Principal] = KeyCache(60)
    cache.put("h1", "k1", _principal("k1"))
    cache.put("h2", "k2", _principal("k2"))
    cache.forget("k1")
    assert cache.get("h1") is None
    assert cache.get("h2") == _principal("k2")


def test_the_least_recently_used_goes_first() -> None:
    cache: KeyCache[Principal] = KeyCache(60, max_entries=2)
    cache.put("h1", "k1", _principal("k1"))
    cache.put("h2", "k2", _principal("k2"))
    assert cache.get("h1") is not None  # h2 is now the least recently used
    cache.put("h3", "k3", _principal("k3"))
    assert [cache.get(h) is not None for h in ("h1", "h2", "h3")] == [True, False, True]


async def test_a_revoked_key_is_refused_at_once_here_and_within_the_ttl_elsewhere(
    facade: ConnectorsFacade, admin: Admin
) -> None:
    tenant, _ = await admin.create_tenant("cache")
    made = await admin.create_key(tenant.id, name="ci", scopes=("connectors:read",))
    other = Admin(facade)  # its own cache, as another replica's: the store is shared
    clock = Clock()
    other.keys = KeyCache(facade.settings.key_cache_ttl, clock=clock)
    assert facade.settings.key_cache_ttl == 1.0
    # Both processes have looked the key up.
    assert (await admin.authenticate(made.api_key)).key_id == made.key_id
    assert (await other.authenticate(made.api_key)).key_id == made.key_id

    assert await admin.revoke_key(tenant.id, made.key_id) is True
    with pytest.raises(AuthenticationError):
        await admin.authenticate(made.api_key)  # the revoking process: at once
    clock.now += 0.9
    assert (await other.authenticate(made.api_key)).key_id == made.key_id  # inside the bound
    clock.now += 0.1
    with pytest.raises(AuthenticationError):
        await other.authenticate(made.api_key)  # the bound has passed


async def test_unknown_keys_are_never_cached(facade: ConnectorsFacade, admin: Admin) -> None:
    tenant, _ = await admin.create_tenant("cache-miss")
    with pytest.raises(AuthenticationError):
        await admin.authenticate("cdk_" + "x" * 43)
    assert len(admin.keys) == 0
    made = await admin.create_key(tenant.id, name="new", scopes=("connectors:read",))
    assert (await admin.authenticate(made.api_key)).key_id == made.key_id
    assert len(admin.keys) == 1
