"""The S3 access policy of one drop-box group, for keys scoped to the group's folder (an
IAM user's policy on AWS, a MinIO or Ceph RGW user policy): list the group's folders,
write and delete (but not read) ``inputs/`` and ``submissions/``, everything on
``configs/``, read and delete ``results/``. The statements are those the original gives
its groups."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from neuroferry.dropbox._registry import Dropbox
from neuroferry.errors import InvalidInput


def group_policy(box: Dropbox, group: str) -> dict[str, Any]:
    """The policy document for ``group`` of ``box`` (an ``s3://`` drop-box);
    :class:`InvalidInput` for other stores or a group the drop-box does not have."""
    if group not in {g.name for g in box.groups}:
        known = ", ".join(g.name for g in box.groups) or "none"
        raise InvalidInput(f"group: drop-box {box.name!r} has no group {group!r} ({known})")
    url = urlsplit(box.store_url)
    if url.scheme != "s3":
        raise InvalidInput(
            f"drop-box {box.name!r} lies in {box.store_url}: only an s3:// drop-box has a "
            "bucket policy; users of other stores go through the service"
        )
    bucket = url.netloc
    base = url.path.strip("/")
    root = f"{base}/{group}" if base else group
    arn = f"arn:aws:s3:::{bucket}"
    # the original's order; its "logs" (the bucket's own folder) is left out: a drop-box
    # has none, and a group has no business listing it
    listed = ("inputs", "results", "submissions", "configs")
    parts = base.split("/") if base else []
    above = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]
    exact = ["", *above, f"{root}/"]
    exact += [f"{root}/{f}" for f in listed] + [f"{root}/{f}/" for f in listed]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "VisualEditor0",
                "Effect": "Allow",
                "Action": "s3:GetBucketLocation",
                "Resource": "*",
            },
            {"Sid": "VisualEditor3", "Effect": "Allow", "Action": "s3:HeadBucket", "Resource": "*"},
            {
                "Sid": "VisualEditor1",
                "Effect": "Allow",
                "Action": "s3:ListAllMyBuckets",
                "Resource": "*",
            },
            {
                "Sid": "ListBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn,
                "Condition": {"StringEquals": {"s3:prefix": exact, "s3:delimiter": ["/"]}},
            },
            {
                "Sid": "ListSubBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn,
                "Condition": {
                    "StringLike": {
                        "s3:prefix": [
                            f"{root}/{f}/*" for f in ("inputs", "results", "configs", "submissions")
                        ]
                    }
                },
            },
            {
                "Sid": "Inputfolderwrite",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{arn}/{root}/{f}/*" for f in ("inputs", "configs", "submissions")],
            },
            {
                "Sid": "Outputfolderwrite",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:DeleteObject"],
                "Resource": [f"{arn}/{root}/{f}/*" for f in ("results", "configs")],
            },
        ],
    }
