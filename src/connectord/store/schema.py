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
    sa.UniqueConstraint("tenant_id", "name", name="uq_connectors_tenant_name"),
    sa.Index("ix_connectors_tenant_id", "tenant_id", "id"),
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
