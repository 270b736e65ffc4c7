"""UID syntax (PS3.5 9.1): digits and dots, at most 64 characters. Pure."""
from __future__ import annotations

import re

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(text: str) -> bool:
    """True for a syntactically usable UID. Leading zeros in a component are tolerated:
    real archives hold such UIDs and refusing them would lose data."""
    return len(text) <= 64 and bool(_UID.match(text))
