"""Names and text as the database keeps them."""

from __future__ import annotations

import re

from neuroferry.errors import InvalidInput

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A name that is stored and shown (job types, modality and platform abbreviations)."""
NAME_RULE = "1 to 128 letters, digits, '-', '_' or '.', starting with a letter or digit"


def no_nul(field: str, value: str | None) -> None:
    """Databases cannot keep NUL characters in text; InvalidInput names the field."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput(f"{field}: {value!r} contains a NUL character")
