"""A job's own access: when set, its tasks run with it instead of their owner's grants
(a drop-box's job reads only its group's folder and writes only its own results).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.add_column(sa.Column("access", JSON_DOCUMENT, nullable=True))


def downgrade() -> None:
    # never rebuilt: on SQLite a rebuild drops the table, and with foreign keys on that
    # deletes every task of every job (ON DELETE CASCADE)
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("access")
