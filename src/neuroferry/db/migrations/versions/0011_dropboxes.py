"""Periodic watchers' leases, and drop-boxes: their groups, members and the submit files
their watcher has taken.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "watcher_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("next_run", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_table(
        "dropboxes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("analysis", sa.String(128), nullable=False),
        sa.Column("store_url", sa.Text(), nullable=False),
        sa.Column(
            "created_by",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dropbox_groups",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "dropbox_id",
            sa.Integer(),
            sa.ForeignKey("dropboxes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("max_minutes", sa.Integer(), nullable=True),
        sa.Column("max_per_day", sa.Integer(), nullable=True),
    )
    op.create_index("uq_dropbox_groups_name", "dropbox_groups", ["dropbox_id", "name"], unique=True)
    op.create_table(
        "dropbox_members",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("dropbox_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "dropbox_submissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "dropbox_id",
            sa.Integer(),
            sa.ForeignKey("dropboxes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(256), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.String(256), nullable=True),
        sa.Column("folder", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("datasets", JSON_DOCUMENT, nullable=False),
        sa.Column("parameters", JSON_DOCUMENT, nullable=True),
        sa.Column("setup_log", JSON_DOCUMENT, nullable=False),
        sa.Column("written", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_dropbox_submissions_file",
        "dropbox_submissions",
        ["dropbox_id", "key", "sha256"],
        unique=True,
    )
    op.create_index(
        "ix_dropbox_submissions_timestamp",
        "dropbox_submissions",
        ["dropbox_id", "group_name", "timestamp"],
    )
    op.create_index("ix_dropbox_submissions_state", "dropbox_submissions", ["state"])
    # a timestamp names a group's results folder: one submission that is not refused has it
    live = sa.text("state IN ('claimed', 'waiting', 'running', 'ended')")
    op.create_index(
        "uq_dropbox_submissions_live_timestamp",
        "dropbox_submissions",
        ["dropbox_id", "group_name", "timestamp"],
        unique=True,
        postgresql_where=live,
        sqlite_where=live,
    )


def downgrade() -> None:
    op.drop_index("uq_dropbox_submissions_live_timestamp", table_name="dropbox_submissions")
    op.drop_index("ix_dropbox_submissions_state", table_name="dropbox_submissions")
    op.drop_index("ix_dropbox_submissions_timestamp", table_name="dropbox_submissions")
    op.drop_index("uq_dropbox_submissions_file", table_name="dropbox_submissions")
    op.drop_table("dropbox_submissions")
    op.drop_table("dropbox_members")
    op.drop_index("uq_dropbox_groups_name", table_name="dropbox_groups")
    op.drop_table("dropbox_groups")
    op.drop_table("dropboxes")
    op.drop_table("watcher_leases")
