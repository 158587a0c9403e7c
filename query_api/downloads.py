"""Headers of file downloads whose names come from user data (run ids): ASCII-only, never a control
character, with the exact name in RFC 5987 / RFC 6266 `filename*` for clients that read it."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

# RFC 5987 attr-char besides letters and digits: everything else in filename* is percent-encoded.
_ATTR_CHARS: Final = "!#$&+-.^_`|~"


def attachment(filename: str, ascii_filename: str) -> str:
    """A Content-Disposition value: `ascii_filename` (printable ASCII without `"` or `\\`, else the
    character is replaced) for old clients, `filename` in UTF-8 for the others."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in ascii_filename)
    exact = quote(filename.encode("utf-8", "replace"), safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"
