"""The tables, as SQLAlchemy Core metadata (the migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
    # Whether keys with connectors:use may check credentials out (docs/use.md).
    sa.Column("checkout_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    # A narrowed key's reach (docs/use.md): a JSON list of connector ids and a JSON object
    # of metadata pairs; NULL in both covers the whole tenant.
    sa.Column("connector_ids", sa.Text, nullable=True),
    sa.Column("selector", sa.Text, nullable=True),
)

connectors = sa.Table(
    "connectors",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # No foreign key to tenants: a tenant id is a namespace. The library may use its
    # own ids ("acme") without registering a tenant; API keys do need a tenant row.
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("connector_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("capabilities", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text, nullable=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("secret_fields", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),
    # Scheduled checks (docs/health.md). check_interval: seconds, NULL = the server's
    # default, 0 = off; failure_threshold: NULL = the server's default.
    sa.Column("check_interval", sa.Float, nullable=True),
    sa.Column("failure_threshold", sa.Integer, nullable=True),
    # When the next scheduled check is due (NULL: not scheduled yet; the scheduler
    # spreads those with jitter). A replica that claims a check holds a lease on
    # the row until lease_until; a lease that expires is claimed by another replica.
    sa.Column("next_check_at", TS, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", TS, nullable=True),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    # Set when connector.down was sent (after failure_threshold failures); cleared,
    # with connector.recovered, by the next success.
    sa.Column("down_since", TS, nullable=True),
    sa.UniqueConstraint("tenant_id", "name", name="uq_connectors_tenant_name"),
    sa.Index("ix_connectors_tenant_id", "tenant_id", "id"),
    sa.Index("ix_connectors_next_check_at", "next_check_at"),
)

connector_secrets = sa.Table(
    "connector_secrets",
    metadata,
    sa.Column(
        "connector_id",
        sa.String(36),
        sa.ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Index("ix_connector_secrets_tenant_key", "tenant_id", "key_id"),
)

test_results = sa.Table(
    "test_results",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "connector_id",
        sa.String(36),
        sa.ForeignKey("connectors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_kind", sa.String(32), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("tested_at", TS, nullable=False),
    sa.Index("ix_test_results_connector", "tenant_id", "connector_id", "id"),
    sa.Index("ix_test_results_connector_time", "connector_id", "tested_at"),
    sa.Index("ix_test_results_tested_at", "tested_at"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("connector_id", sa.String(36), nullable=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("ix_audit_events_tenant", "tenant_id", "id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# --- notifications (docs/health.md) --------------------------------------------------------

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False),  # JSON list of event types
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    # The signing secret, encrypted with the key ring like connector secrets.
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("secret", sa.LargeBinary, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=True),
    sa.Index("ix_webhooks_tenant", "tenant_id", "id"),
)

#: Every event, in order (seq): the outbox deliveries come from and what
#: ``GET /api/v1/events`` streams.
events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("id", sa.String(40), nullable=False, unique=True),  # the webhook-id
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("connector_id", sa.String(36), nullable=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON body sent
    sa.Index("ix_events_tenant_seq", "tenant_id", "seq"),
    sa.Index("ix_events_at", "at"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("connector_id", sa.String(36), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", TS, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_webhook", "tenant_id", "webhook_id", "event_seq"),
    # The claim ranks the pending deliveries of each (webhook, connector) by seq: only
    # pending rows are indexed, so a large delivered history costs nothing.
    sa.Index(
        "ix_webhook_deliveries_pending",
        "webhook_id",
        "connector_id",
        "event_seq",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
)

# --- bulk tests over the API ---------------------------------------------------------------

bulk_tests = sa.Table(
    "bulk_tests",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | done | cancelled
    sa.Column("filters", sa.Text, nullable=False),  # JSON
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("ok", sa.Integer, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # JSON: failed by kind, slowest
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=True),
    sa.Index("ix_bulk_tests_tenant", "tenant_id", "id"),
)

# OAuth 2.0 access tokens (docs/use.md, "OAuth2 tokens"): sealed by the key ring, valid
# until refresh_at; a process refreshing one holds the row's lease until lease_until.
oauth_tokens = sa.Table(
    "oauth_tokens",
    metadata,
    sa.Column(
        "connector_id",
        sa.String(36),
        sa.ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=True),
    sa.Column("refresh_at", TS, nullable=True),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", TS, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)
