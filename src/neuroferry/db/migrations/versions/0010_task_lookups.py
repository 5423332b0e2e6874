"""Indexes for finishing and claiming the instances of big mapped tasks: a job's
top-level tasks, a task's instances by state, and the first waiting tasks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_job_level", "tasks", ["job_id", "map_index"])
    op.create_index("ix_tasks_job_name_state", "tasks", ["job_id", "name", "state"])
    op.create_index("ix_tasks_state_id", "tasks", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_state_id", table_name="tasks")
    op.drop_index("ix_tasks_job_name_state", table_name="tasks")
    op.drop_index("ix_tasks_job_level", table_name="tasks")
