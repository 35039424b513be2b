"""An index of pending webhook deliveries, for the claim's per-connector order.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["webhook_id", "connector_id", "event_seq"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_pending", "webhook_deliveries")
