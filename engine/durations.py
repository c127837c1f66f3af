"""One duration grammar everywhere: ``30s``, ``30m``, ``6h``, ``3d``, ``2w`` and sums like ``1h30m``.

Durations are held as integer microseconds, the resolution of the telemetry ``ts`` column.
"""
from __future__ import annotations

import re

from .errors import SpecError

US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000,
      "w": 7 * 86_400_000_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:w|d|h|m|s))+$")
EXAMPLES = "'30m', '6h', '3d', '2w' or '1h30m'"
#: the longest duration veille takes (100 years): anything longer is a typo, and kernels hold
#: durations as 64-bit microseconds
MAX_US = 100 * 365 * 86_400_000_000


def parse_duration(text: object, *, what: str = "duration") -> int:
    """Parse a duration into microseconds.

    >>> parse_duration("3d") == 3 * 86_400_000_000
    True
    >>> parse_duration("1h30m") // 60_000_000
    90
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise SpecError(f"The {what} must be a duration like {EXAMPLES}. Got {_short(text)} "
                        "instead.")
    s = text.strip()
    if not _WHOLE.match(s):
        raise SpecError(f"The {what} must be a duration like {EXAMPLES}. Got {_short(text)} "
                        "instead.")
    total = 0.0
    for number, unit in _PART.findall(s):
        total += float(number) * US[unit]
    if total > MAX_US:
        raise SpecError(f"The {what} must be at most 100 years. Got {_short(text)} instead.")
    return int(round(total))


def _short(text: str) -> str:
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "..."


def is_duration(text: object) -> bool:
    return isinstance(text, str) and bool(_WHOLE.match(text.strip()))


def format_duration(us: int) -> str:
    """Inverse of :func:`parse_duration` for whole units: 259200000000 → '3d'."""
    if us == 0:
        return "0m"
    out, rest = [], int(us)
    for unit in ("w", "d", "h", "m", "s"):
        n, rest = divmod(rest, US[unit])
        if n:
            out.append(f"{n}{unit}")
    if rest:
        out.append(f"{rest / 1_000_000:g}s")
    return "".join(out)
