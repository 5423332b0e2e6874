"""Catalog index values: one row per value of a document at a declared index path.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_index_values",
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column(
            "doc_id",
            sa.String(64),
            sa.ForeignKey(
                "catalog_documents.id",
                ondelete="CASCADE",
                name="fk_catalog_index_values_doc_id_catalog_documents",
            ),
            nullable=False,
        ),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("num", sa.Float, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
    )
    op.create_index("ix_catalog_index_values_num", "catalog_index_values", ["path", "kind", "num"])
    op.create_index(
        "ix_catalog_index_values_text", "catalog_index_values", ["path", "kind", "text"]
    )
    op.create_index("ix_catalog_index_values_doc", "catalog_index_values", ["doc_id"])


def downgrade() -> None:
    op.drop_table("catalog_index_values")
