"""The store's part of the OAuth 2.0 token broker (``connectord.use.oauth``): one row per
connector in ``oauth_tokens``, holding its sealed access token and a lease.

A process that must refresh a connector's token first takes the row's lease
(an ``UPDATE ... WHERE`` the lease is free or expired, so exactly one process
of all replicas wins it), asks the token endpoint, and writes the new token
while clearing the lease; the others wait and read the new token. A refresh
token the endpoint rotated is written into the connector's own secrets in the
same transaction (a compare-and-swap on their ciphertext), so the key-ring
rotation, backups and checkout see it like any secret.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectord.secrets import Ciphertext
from connectord.store.backends import Backend, Executor, Query, Row
from connectord.store.base import OAuthTokenRecord
from connectord.store.schema import connector_secrets, connectors, oauth_tokens

P = sa.bindparam


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _record(row: Row) -> OAuthTokenRecord:
    sealed = None
    if row["ciphertext"] is not None and row["key_id"] is not None:
        sealed = Ciphertext(row["key_id"], bytes(row["ciphertext"]))
    return OAuthTokenRecord(
        fingerprint=row["fingerprint"],
        token=sealed,
        refresh_at=_dt(row["refresh_at"]),
        expires_at=_dt(row["expires_at"]),
        lease_owner=row["lease_owner"],
        lease_until=_dt(row["lease_until"]),
    )


def _keyed() -> list[sa.ColumnElement[bool]]:
    return [oauth_tokens.c.tenant_id == P("tenant_id"), oauth_tokens.c.connector_id == P("connector_id")]


class OAuthTokenStore:
    """The ``oauth_tokens`` methods of :class:`~connectord.store.sql.SqlStore` (a mixin)."""

    backend: Backend
    _q: Callable[[str, Callable[[], sa.sql.ClauseElement]], Query]

    async def get_oauth_token(self, tenant_id: str, connector_id: str) -> OAuthTokenRecord | None:
        """The connector's token row, or ``None`` when it has none yet."""
        q = self._q("oauth.get", lambda: sa.select(oauth_tokens).where(*_keyed()))
        row = await self.backend.read(
            lambda ex: ex.one(q, {"tenant_id": tenant_id, "connector_id": connector_id})
        )
        return _record(row) if row is not None else None

    def _create_row(self) -> Query:
        def build() -> sa.sql.ClauseElement:
            source = sa.select(
                connectors.c.id, connectors.c.tenant_id, P("now", type_=sa.DateTime(timezone=True))
            ).where(connectors.c.tenant_id == P("tenant_id"), connectors.c.id == P("connector_id"))
            if self.backend.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                return (
                    pg_insert(oauth_tokens)
                    .from_select(["connector_id", "tenant_id", "updated_at"], source)
                    .on_conflict_do_nothing()
                )
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return (
                sqlite_insert(oauth_tokens)
                .from_select(["connector_id", "tenant_id", "updated_at"], source)
                .on_conflict_do_nothing()
            )

        return self._q("oauth.create", build)

    async def lease_oauth_token(
        self, tenant_id: str, connector_id: str, owner: str, now: datetime, until: datetime
    ) -> OAuthTokenRecord | None:
        """Take the row's refresh lease for ``owner`` until ``until`` (making the row if the
        connector has none), and the row as it is now; ``None`` when another process holds
        an unexpired lease, or the connector does not exist."""
        create = self._create_row()
        take = self._q(
            "oauth.lease",
            lambda: (
                oauth_tokens.update()
                .where(
                    *_keyed(),
                    sa.or_(
                        oauth_tokens.c.lease_until.is_(None),
                        oauth_tokens.c.lease_until < P("now"),
                        oauth_tokens.c.lease_owner == P("owner"),
                    ),
                )
                .values(lease_owner=P("owner"), lease_until=P("until"))
                .returning(*oauth_tokens.c)
            ),
        )
        params = {
            "tenant_id": tenant_id,
            "connector_id": connector_id,
            "owner": owner,
            "now": now,
            "until": until,
        }

        async def op(ex: Executor) -> OAuthTokenRecord | None:
            await ex.run(create, params)
            row = await ex.one(take, params)
            return _record(row) if row is not None else None

        return await self.backend.write(op)

    async def save_oauth_token(
        self,
        tenant_id: str,
        connector_id: str,
        owner: str,
        *,
        fingerprint: str,
        token: Ciphertext,
        refresh_at: datetime,
        expires_at: datetime,
        now: datetime,
        secret_swap: tuple[Ciphertext, Ciphertext] | None = None,
    ) -> bool:
        """Store a new token and free the lease, if ``owner`` still holds it (else ``False``
        and nothing changes). ``secret_swap`` (old, new): the connector's secrets, replaced
        in the same transaction when they are still ``old`` (a rotated refresh token)."""
        save = self._q(
            "oauth.save",
            lambda: (
                oauth_tokens.update()
                .where(*_keyed(), oauth_tokens.c.lease_owner == P("owner"))
                .values(
                    fingerprint=P("fingerprint"),
                    key_id=P("key_id"),
                    ciphertext=P("ciphertext"),
                    refresh_at=P("refresh_at"),
                    expires_at=P("expires_at"),
                    lease_owner=None,
                    lease_until=None,
                    updated_at=P("now"),
                )
            ),
        )
        swap = self._q(
            "oauth.secret_swap",
            lambda: (
                connector_secrets.update()
                .where(
                    connector_secrets.c.tenant_id == P("tenant_id"),
                    connector_secrets.c.connector_id == P("connector_id"),
                    connector_secrets.c.key_id == P("old_key_id"),
                    connector_secrets.c.ciphertext == P("old"),
                )
                .values(key_id=P("new_key_id"), ciphertext=P("new"))
            ),
        )
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "connector_id": connector_id,
            "owner": owner,
            "fingerprint": fingerprint,
            "key_id": token.key_id,
            "ciphertext": token.data,
            "refresh_at": refresh_at,
            "expires_at": expires_at,
            "now": now,
        }

        async def op(ex: Executor) -> bool:
            if await ex.run(save, params) != 1:
                return False
            if secret_swap is not None:
                old, new = secret_swap
                await ex.run(
                    swap,
                    {
                        "tenant_id": tenant_id,
                        "connector_id": connector_id,
                        "old_key_id": old.key_id,
                        "old": old.data,
                        "new_key_id": new.key_id,
                        "new": new.data,
                    },
                )
            return True

        return await self.backend.write(op)

    async def release_oauth_token(
        self, tenant_id: str, connector_id: str, owner: str, *, refused: str | None = None
    ) -> None:
        """Free ``owner``'s lease. ``refused``: the grant was refused for good; the token is
        forgotten and ``refused`` (a marker of the auth settings) kept as the fingerprint."""
        cleared = refused is not None

        def build() -> sa.sql.ClauseElement:
            values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
            if cleared:
                values |= {
                    "fingerprint": P("refused"),
                    "key_id": None,
                    "ciphertext": None,
                    "refresh_at": None,
                    "expires_at": None,
                }
            return (
                oauth_tokens.update()
                .where(*_keyed(), oauth_tokens.c.lease_owner == P("owner"))
                .values(**values)
            )

        q = self._q(f"oauth.release:{cleared}", build)
        params = {"tenant_id": tenant_id, "connector_id": connector_id, "owner": owner, "refused": refused}
        await self.backend.write(lambda ex: ex.run(q, params))
