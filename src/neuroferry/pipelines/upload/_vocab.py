"""The modalities and platforms an upload may name, and how names are matched to them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One modality or platform: its display name and the abbreviation used in keys."""

    name: str
    abbreviation: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "abbreviation": self.abbreviation}


MODALITIES: tuple[Term, ...] = (
    Term("Barcoded anatomy resolved by sequencing", "BARseq"),
    Term("Behavior", "behavior"),
    Term("Behavior videos", "behavior-videos"),
    Term("Brightfield microscopy", "brightfield"),
    Term("Confocal microscopy", "confocal"),
    Term("Extracellular electrophysiology", "ecephys"),
    Term("Electron microscopy", "EM"),
    Term("Electromyography", "EMG"),
    Term("Fiber photometry", "fib"),
    Term("Fluorescence micro-optical sectioning tomography", "fMOST"),
    Term("Intracellular electrophysiology", "icephys"),
    Term("Intrinsic signal imaging", "ISI"),
    Term("Multiplexed analysis of projections by sequencing", "MAPseq"),
    Term("Multiplexed error-robust fluorescence in situ hybridization", "merfish"),
    Term("Magnetic resonance imaging", "MRI"),
    Term("One-photon imaging", "one-photon"),
    Term("Planar optical physiology", "pophys"),
    Term("Single cell RNA sequencing", "scRNAseq"),
    Term("Random access projection microscopy", "slap2"),
    Term("Selective plane illumination microscopy", "SPIM"),
    Term("Serial two-photon tomography", "STPT"),
)
"""Every modality an upload may name (the original service's list)."""

PLATFORMS: tuple[Term, ...] = (
    Term("Behavior platform", "behavior"),
    Term("Confocal microscopy platform", "confocal"),
    Term("Electrophysiology platform", "ecephys"),
    Term("ExaSPIM platform", "exaSPIM"),
    Term("Frame-projected independent-fiber photometry platform", "FIP"),
    Term("Hybridization chain reaction platform", "HCR"),
    Term("Hyperspectral fiber photometry platform", "HSFP"),
    Term("Intrinsic signal imaging platform", "ISI"),
    Term("MERFISH platform", "MERFISH"),
    Term("MesoSPIM platform", "mesoSPIM"),
    Term("Motor observatory platform", "motor-observatory"),
    Term("Magnetic resonance imaging platform", "MRI"),
    Term("Multiplane optical physiology platform", "multiplane-ophys"),
    Term("Single-plane optical physiology platform", "single-plane-ophys"),
    Term("SLAP2 platform", "SLAP2"),
    Term("SmartSPIM platform", "SmartSPIM"),
)
"""Every platform an upload may name (the original service's list)."""

# Names that older versions of the metadata schema (and the original service's list, with
# its misspelling) used; upper-case enum names (``BEHAVIOR_VIDEOS``) match without an entry.
_LEGACY_MODALITIES = {"ophys": "pophys", "Serial two-photon tomogrophy": "STPT"}


def _fold(value: str) -> str:
    """The form names are compared in: case, ``_``, spaces and ``-`` do not matter."""
    return re.sub(r"[\s_-]+", "-", value.strip().lower())


def _index(terms: tuple[Term, ...], legacy: dict[str, str]) -> dict[str, Term]:
    by_abbreviation = {t.abbreviation: t for t in terms}
    index: dict[str, Term] = {}
    for term in terms:
        index.setdefault(_fold(term.name), term)
    for term in terms:  # an abbreviation wins over a name that folds the same way
        index[_fold(term.abbreviation)] = term
    for old, new in legacy.items():
        index[_fold(old)] = by_abbreviation[new]
    return index


_MODALITY_INDEX = _index(MODALITIES, _LEGACY_MODALITIES)
_PLATFORM_INDEX = _index(PLATFORMS, {})


_ACTIVE: ContextVar[tuple[dict[str, Term], dict[str, Term]] | None] = ContextVar(
    "upload_vocabulary", default=None
)


@contextmanager
def vocabulary(
    modalities: Sequence[tuple[str, str, Sequence[str]]],
    platforms: Sequence[tuple[str, str, Sequence[str]]],
) -> Iterator[None]:
    """Check names against these lists (``(name, abbreviation, legacy names)``, e.g. the
    service's database lists that admins edit) instead of the package's, within the block."""

    def index(terms: Sequence[tuple[str, str, Sequence[str]]]) -> dict[str, Term]:
        made = tuple(Term(name, abbreviation) for name, abbreviation, _ in terms)
        legacy = {old: abbreviation for _, abbreviation, olds in terms for old in olds}
        return _index(made, legacy)

    token = _ACTIVE.set((index(modalities), index(platforms)))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _lookup(value: str, which: int, default: dict[str, Term], what: str) -> Term:
    active = _ACTIVE.get()
    index = active[which] if active else default
    found = index.get(_fold(value))
    if found is None:
        allowed = dict.fromkeys(t.abbreviation for t in index.values())
        raise ValueError(f"{value!r} is not a known {what}; allowed: {', '.join(allowed)}")
    return found


def find_modality(value: str) -> Term:
    """The modality named by an abbreviation or name, in any case (``ECEPHYS``,
    ``behavior_videos``, ``Behavior videos``); ``ValueError`` lists the allowed ones."""
    return _lookup(value, 0, _MODALITY_INDEX, "modality")


def find_platform(value: str) -> Term:
    """The platform named by an abbreviation or name, in any case; ``ValueError`` lists
    the allowed ones."""
    return _lookup(value, 1, _PLATFORM_INDEX, "platform")
