"""The trust boundary: asset owners, one unfinished job per asset, and the sign-in
throttle shared by every service process.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("catalog_documents") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_catalog_documents_owner", "users", ["owner_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "asset_locks",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column(
            "job_id",
            sa.Integer(),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_asset_locks_job", "asset_locks", ["job_id"])
    op.create_table(
        "sign_in_attempts",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sign_in_attempts")
    op.drop_index("ix_asset_locks_job", table_name="asset_locks")
    op.drop_table("asset_locks")
    with op.batch_alter_table("catalog_documents") as batch:
        batch.drop_constraint("fk_catalog_documents_owner", type_="foreignkey")
        batch.drop_column("owner_id")
