"""Who sees a drop-box's jobs: besides their owner (the admin who published the
drop-box), the members of the group whose submission each job runs. They see its state,
tasks and logs; only admins cancel or retry it."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, select

from neuroferry.db import dropbox_groups, dropbox_members, dropbox_submissions, jobs
from neuroferry.engine import register_audience


def group_jobs(user_id: int) -> ColumnElement[bool]:
    """The jobs of the submissions of the drop-box groups the user ``user_id`` is in."""
    submitted = (
        select(dropbox_submissions.c.job_id)
        .join(
            dropbox_groups,
            and_(
                dropbox_groups.c.dropbox_id == dropbox_submissions.c.dropbox_id,
                dropbox_groups.c.name == dropbox_submissions.c.group_name,
            ),
        )
        .join(dropbox_members, dropbox_members.c.group_id == dropbox_groups.c.id)
        .where(dropbox_members.c.user_id == user_id, dropbox_submissions.c.job_id.is_not(None))
    )
    return jobs.c.id.in_(submitted)


register_audience(group_jobs)
