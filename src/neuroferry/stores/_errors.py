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


def translate(exc: BaseException, url: str, action: str, key: str | None = None) -> StoreError:
    """The neuroferry error for an obstore or OS error raised doing ``action`` on ``url``,
    or on its object (or prefix) ``key``."""
    code, line = _summary(exc)
    target = f"{url}/{key}" if key else url
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or code in _AUTH_CODES:
        why = f" ({code})" if code else ""
        return StoreAuthError(
            f"{target} refused to {action}{why}: check the credentials "
            "(FERRY_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID and the secret)"
        )
    if isinstance(exc, NotFoundError | FileNotFoundError) or code in _MISSING_CODES:
        what = f" ({code})" if code else ""
        return StoreNotFound(f"cannot {action}: {target} does not exist{what}")
    if not key and "invalid path" in line:
        detail = line.split("invalid path:", 1)[-1].strip()
        return StoreError(
            f"{url} holds an object with an invalid path ({detail}), which cannot be copied "
            "safely; nothing was copied: rename or remove it, or sync a prefix without it"
        )
    if "error sending request" in line or "Connection refused" in line or "dns error" in line:
        return StoreUnreachable(
            f"cannot reach {target} to {action}: check the endpoint and that it is up"
        )
    if key:
        return StoreError(f"cannot {action} {target}: {line}")
    return StoreError(f"cannot {action} at {url}: {line}")
