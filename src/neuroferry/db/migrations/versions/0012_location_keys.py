"""The canonical form of each catalog document's location, so that the documents at,
inside or around a store URL are found however their location is spelled.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from neuroferry.catalog import location_key

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("catalog_documents") as batch:
        batch.add_column(sa.Column("location_key", sa.Text(), nullable=True))
    op.create_index(
        "ix_catalog_documents_location_key",
        "catalog_documents",
        ["location_key"],
        postgresql_ops={"location_key": "text_pattern_ops"},
    )
    documents = sa.table(
        "catalog_documents",
        sa.column("id", sa.String()),
        sa.column("location", sa.Text()),
        sa.column("location_key", sa.Text()),
    )
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(documents.c.id, documents.c.location)
            .where(documents.c.location.is_not(None), documents.c.id > after)
            .order_by(documents.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for doc_id, location in rows:
            key = location_key(location)
            if key is not None:
                conn.execute(
                    sa.update(documents).where(documents.c.id == doc_id).values(location_key=key)
                )
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_catalog_documents_location_key", table_name="catalog_documents")
    # never rebuilt: on SQLite a rebuild drops the table, and with foreign keys on that
    # deletes every index value of the documents (ON DELETE CASCADE)
    with op.batch_alter_table("catalog_documents", recreate="never") as batch:
        batch.drop_column("location_key")
