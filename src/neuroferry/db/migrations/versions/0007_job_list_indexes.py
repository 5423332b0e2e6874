"""Indexes for the jobs list: state with submit time, and (PostgreSQL) name trigrams.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.create_index("ix_jobs_state_created", "jobs", ["state", "created"])
    if op.get_bind().dialect.name == "postgresql":
        # pg_trgm ships with PostgreSQL and is a trusted extension: a database owner may
        # create it. It lets "the name contains …" use an index instead of reading every job.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_jobs_name_trgm",
            "jobs",
            ["name"],
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_jobs_name_trgm", table_name="jobs")
    op.drop_index("ix_jobs_state_created", table_name="jobs")
    op.create_index("ix_jobs_state", "jobs", ["state"])
