"""Jobs, their tasks, and the orchestrators that run them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_jobs_owner_id_users"),
            nullable=True,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", JSON_DOCUMENT, nullable=False),
        sa.Column("summary", JSON_DOCUMENT, nullable=False),
        sa.Column("job_type", sa.String(128), nullable=True),
        sa.Column("job_type_version", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("updated", WHEN, nullable=False),
        sa.Column("started", WHEN, nullable=True),
        sa.Column("finished", WHEN, nullable=True),
        sa.Column("cancel_requested", WHEN, nullable=True),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_created", "jobs", ["created"])
    op.create_index("ix_jobs_owner_created", "jobs", ["owner_id", "created"])
    op.create_index("ix_jobs_name", "jobs", ["name"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_tasks_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("item", sa.String(256), nullable=True),
        sa.Column("placement", sa.String(8), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("retries_left", sa.Integer, nullable=False),
        sa.Column("params", JSON_DOCUMENT, nullable=False),
        sa.Column("result", JSON_DOCUMENT, nullable=True),
        sa.Column("saved_state", JSON_DOCUMENT, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("not_before", WHEN, nullable=True),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("started", WHEN, nullable=True),
        sa.Column("finished", WHEN, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(256), nullable=True),
    )
    op.create_index("uq_tasks_instance", "tasks", ["job_id", "name", "map_index"], unique=True)
    op.create_index("ix_tasks_runnable", "tasks", ["state", "not_before"])
    op.create_index("ix_tasks_claimed_by", "tasks", ["claimed_by"])
    op.create_table(
        "orchestrators",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", WHEN, nullable=False),
        sa.Column("heartbeat", WHEN, nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("orchestrators")
    op.drop_table("tasks")
    op.drop_table("jobs")
