"""Baseline: installation facts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "ferry_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column(
            "updated", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.bulk_insert(table, [{"key": "instance_id", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("ferry_meta")
