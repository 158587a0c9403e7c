"""Exact timestamps at the API's edges: RFC 3339 strings to and from integer Unix nanoseconds.

Python datetimes stop at microseconds, and downstream systems report nanoseconds or milliseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})$")


class TimeFormatError(ValueError):
    """Not an RFC 3339 date-time with an offset."""


def parse_rfc3339_ns(text: str) -> int:
    """Unix nanoseconds of an RFC 3339 time such as 2026-11-25T04:00:00.123456789Z or ...+01:00."""
    match = _RFC3339.match(text.strip())
    if match is None:
        raise TimeFormatError(f"{text!r} is not an RFC 3339 time with an offset, e.g. 2026-11-25T04:00:00Z")
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    if ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    try:
        whole = datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError as error:
        raise TimeFormatError(f"{text!r} is not a valid time: {error}") from None
    nanos = int((fraction or "0").ljust(9, "0"))
    seconds = int(whole.timestamp())
    if not 0 <= seconds < 2**33:
        raise TimeFormatError(f"{text!r} is outside the years 1970 to 2242")
    return seconds * 1_000_000_000 + nanos


def rfc3339_nanos(unix_nano: int) -> str:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
