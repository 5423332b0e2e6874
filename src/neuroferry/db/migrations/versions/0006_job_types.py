"""Job types (versioned presets of task settings), projects, and the modality and
platform lists.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_types",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("settings", JSON_DOCUMENT, nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    op.create_index("uq_job_types_version", "job_types", ["kind", "name", "version"], unique=True)
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_table(
        "vocab_terms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("list", sa.String(16), nullable=False),
        sa.Column("abbreviation", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("legacy_names", JSON_DOCUMENT, nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
    )
    op.create_index("uq_vocab_terms_term", "vocab_terms", ["list", "abbreviation"], unique=True)


def downgrade() -> None:
    op.drop_table("vocab_terms")
    op.drop_table("projects")
    op.drop_table("job_types")
