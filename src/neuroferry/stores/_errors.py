"""Translate obstore's errors into neuroferry's, with one readable line each."""

from __future__ import annotations

import re

from obstore.exceptions import (
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

from neuroferry.errors import (
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnreachable,
    first_line,
)

_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "ContainerNotFound", "BucketNotFound"}


def _summary(exc: BaseException) -> tuple[str | None, str]:
    text = str(exc)
    code = m.group(1) if (m := re.search(r"<Code>([^<]+)</Code>", text)) else None
    first = re.sub(r":\s*<\?xml.*$", "", first_line(exc))
    return code, first[:300]


def translate(exc: BaseException, url: str, action: str) -> StoreError:
    """The neuroferry error for an obstore or OS error raised doing ``action`` on ``url``."""
    code, line = _summary(exc)
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or code in _AUTH_CODES:
        why = f" ({code})" if code else ""
        return StoreAuthError(
            f"{url} refused to {action}{why}: check the credentials "
            "(FERRY_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID and the secret)"
        )
    if isinstance(exc, NotFoundError | FileNotFoundError) or code in _MISSING_CODES:
        what = f" ({code})" if code else ""
        return StoreNotFound(f"cannot {action}: {url} does not exist{what}")
    if "invalid path" in line:
        detail = line.split("invalid path:", 1)[-1].strip()
        return StoreError(
            f"{url} holds an object with an invalid path ({detail}), which cannot be copied "
            "safely; nothing was copied: rename or remove it, or sync a prefix without it"
        )
    if "error sending request" in line or "Connection refused" in line or "dns error" in line:
        return StoreUnreachable(
            f"cannot reach {url} to {action}: check the endpoint and that it is up"
        )
    return StoreError(f"cannot {action} at {url}: {line}")
