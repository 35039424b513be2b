"""Narrowed API keys (a reach of connector ids or a metadata selector) and the tenant
setting that turns credential checkout off (docs/use.md).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # NULL in both: the key covers every connector of its tenant, as every key made
    # before this revision does.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("connector_ids", sa.Text, nullable=True))
        batch.add_column(sa.Column("selector", sa.Text, nullable=True))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("checkout_enabled", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("checkout_enabled")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("selector")
        batch.drop_column("connector_ids")
