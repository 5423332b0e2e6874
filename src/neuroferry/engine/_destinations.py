"""The service's destinations as the kinds' specs name them."""

from __future__ import annotations

from neuroferry.config import Settings
from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.stores import SCHEMES


def named_destination(field: str, name: str, settings: Settings, *, or_url: bool = False) -> str:
    """The store URL (without a trailing ``/``) of the destination called ``name``
    (``FERRY_DESTINATIONS``). :class:`InvalidInput` naming the spec's ``field`` if the
    service has none of that name (``or_url``: the field may also hold a store URL);
    :class:`ConfigError` if the destination is not a store URL."""
    base = settings.destinations.get(name)
    if base is None:
        known = ", ".join(sorted(settings.destinations))
        raise InvalidInput(
            f"{field}: {name!r} is not a destination of this service; "
            + (f"give one of {known} or a store URL" if or_url else f"allowed: {known}"),
            [{"field": field, "message": f"{name!r} is not a destination"}],
        )
    scheme = base.split("://", 1)[0] if "://" in base else "file"
    if scheme not in SCHEMES:
        raise ConfigError(
            f"destination {name!r} is {base!r}, whose scheme {scheme!r} is not a store; "
            f"fix FERRY_DESTINATIONS (allowed: {', '.join(s + '://' for s in SCHEMES)})"
        )
    return base.rstrip("/")
