"""File-name templates (``slice_{z:04d}.tif``, ``{z+3253}_section{z:03d}.png``) and the
natural order of file names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_FIELD = re.compile(r"\{([a-z]+)([+-]\d+)?(?::([^{}]*))?\}")
_DIGITS = re.compile(r"(\d+)")

_Part = str | tuple[str, int, str]


@dataclass(frozen=True)
class Template:
    """A file name (or relative path) with integer fields: ``{z}``, ``{z:04d}`` (a Python
    format spec), ``{z+100}`` / ``{z-1:03d}`` (an offset added first); ``{{`` and ``}}``
    are literal braces."""

    text: str
    parts: tuple[_Part, ...]

    @property
    def fields(self) -> frozenset[str]:
        """The names of the fields the template uses."""
        return frozenset(p[0] for p in self.parts if isinstance(p, tuple))

    @classmethod
    def parse(cls, text: str, allowed: Iterable[str]) -> Template:
        """The template in ``text``; ValueError says what is wrong with it."""
        names = tuple(allowed)
        parts: list[_Part] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "{" and text.startswith("{{", i):
                literal.append("{")
                i += 2
            elif ch == "}" and text.startswith("}}", i):
                literal.append("}")
                i += 2
            elif ch == "}":
                raise ValueError(f"single '}}' at position {i}; write '}}}}' for a brace")
            elif ch == "{":
                end = text.find("}", i)
                match = _FIELD.fullmatch(text, i, end + 1) if end >= 0 else None
                if match is None:
                    raise ValueError(
                        f"{text[i : end + 1 if end >= 0 else None]!r} is not a field; write "
                        f"{{name}}, {{name:04d}} or {{name+100:04d}} with name one of "
                        f"{', '.join(names)}"
                    )
                name, offset, spec = match.group(1), int(match.group(2) or 0), match.group(3)
                if name not in names:
                    raise ValueError(f"unknown field {{{name}}}; allowed: {', '.join(names)}")
                try:
                    format(0, spec or "")
                except ValueError as exc:
                    raise ValueError(
                        f"field {match.group(0)}: bad format {spec!r}: {exc}"
                    ) from None
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append((name, offset, spec or ""))
                i = end + 1
            else:
                literal.append(ch)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    def format(self, **values: int) -> str:
        """The name for these field values; ValueError for a negative number."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, offset, spec = part
            number = values[name] + offset
            if number < 0:
                raise ValueError(f"{{{name}}} would be {number}")
            out.append(format(number, spec))
        return "".join(out)


def is_template(text: str) -> bool:
    """Whether ``text`` is a template (has a field) rather than a glob."""
    return "{" in text


def check_relative(text: str) -> None:
    """Refuse a pattern that is absolute or climbs out of its folder (``..``)."""
    if text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", text):
        raise ValueError("must be relative to the folder, not an absolute path")
    if any(seg == ".." for seg in re.split(r"[/\\]", text)):
        raise ValueError("must not contain '..'")
    if any(ord(ch) < 32 for ch in text):
        raise ValueError("must not contain control characters")


def natural_key(name: str) -> list[str | int]:
    """Sort key that puts ``slice_2`` before ``slice_10``."""
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(_DIGITS.split(name))]
