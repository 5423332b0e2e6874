"""The catalog: JSON documents queried with MongoDB-style filters compiled to SQL."""

from neuroferry.catalog._documents import (
    RECORD_NAME,
    Catalog,
    ImportReport,
    Owner,
    Person,
    location_key,
)
from neuroferry.catalog._filter import (
    SUPPORTED_OPERATORS,
    FilterLimits,
    check_size,
    parse_filter,
    parse_sort,
)
from neuroferry.catalog._projection import Projection, parse_projection

__all__ = [
    "RECORD_NAME",
    "SUPPORTED_OPERATORS",
    "Catalog",
    "FilterLimits",
    "ImportReport",
    "Owner",
    "Person",
    "Projection",
    "check_size",
    "location_key",
    "parse_filter",
    "parse_projection",
    "parse_sort",
]
