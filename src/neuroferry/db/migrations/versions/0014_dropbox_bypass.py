"""Drop-box groups' storage bypass: the endpoint and key a group's ``s3://`` data and
``resultpath`` are reached with.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dropbox_bypass",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("dropbox_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("access_key_id", sa.String(256), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("allow_service_buckets", sa.Boolean(), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dropbox_bypass")
