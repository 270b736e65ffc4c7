"""Which part of the archive a caller sees: a patient compartment (a SMART ``patient/`` token),
one collection (a ``/collections/{name}`` root, an AE limited to collections), restricted
collections kept from those not granted them.

The archive applies a scope inside each query, never after it, so totals, paging and
"not found" are those of the narrowed archive: another patient's UID answers exactly like
a UID that does not exist (no existence leak), and one SQL statement still answers a search.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """Allow-lists; ``None`` means unrestricted. ``hidden`` collections are never visible."""

    patients: frozenset[str] | None = None
    collections: frozenset[str] | None = None
    hidden: frozenset[str] = frozenset()

    @property
    def unrestricted(self) -> bool:
        return self.patients is None and self.collections is None and not self.hidden

    def narrow(self, other: Scope) -> Scope:
        """What both scopes allow (a patient token on a collection root, say)."""
        return Scope(_meet(self.patients, other.patients),
                     _meet(self.collections, other.collections), self.hidden | other.hidden)

    def sees_patient(self, patient_id: str) -> bool:
        return self.patients is None or patient_id in self.patients

    def sees_collection(self, collection: str | None) -> bool:
        if collection is not None and collection in self.hidden:
            return False
        return self.collections is None or collection in self.collections


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    return a if b is None else a & b


EVERYTHING = Scope()
