"""Process memory of the embedded ClickHouse (chDB), which lives inside the `up` process: its allocator's
decay is set before the library loads, and its library's read-only pages leave the resident set once it has started
and again periodically."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

# chDB links jemalloc under the je_ prefix, so its run-time options come from JE_MALLOC_CONF (MALLOC_CONF is
# glibc's and jemalloc's unprefixed name, which chDB ignores); they are read once, when the library loads.
ALLOCATOR_CONF_VARIABLE: Final = "JE_MALLOC_CONF"
_CHDB_MODULE: Final = "chdb"
_CHDB_LIBRARY: Final = re.compile(r"/chdb/_chdb[^/]*\.so$")
_MAPPING_LINE: Final = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
_MADV_DONTNEED: Final = 4


def configure_allocator(dirty_decay_ms: int) -> bool:
    """Makes chDB's jemalloc return freed pages to the system after `dirty_decay_ms` instead of ClickHouse's
    5 s. ClickHouse frees a whole insert block's memory at once after each insert; kept dirty for 5 s, the
    blocks of consecutive inserts stay resident together. False (and nothing set) if chDB is already loaded
    in this process: the options are read only when the library loads."""
    if _CHDB_MODULE in sys.modules:
        return False
    options = [item for item in os.environ.get(ALLOCATOR_CONF_VARIABLE, "").split(",") if item]
    options = [item for item in options if not item.startswith("dirty_decay_ms:")]
    options.append(f"dirty_decay_ms:{dirty_decay_ms}")
    os.environ[ALLOCATOR_CONF_VARIABLE] = ",".join(options)
    return True


def release_library_pages(smaps_file: Path = Path("/proc/self/smaps")) -> int:
    """Drops chDB's read-only library pages from this process's resident set (~190 MiB of code and constants,
    most of it touched once while the engine starts: function and format registries, static data). They
    are clean pages of the library file and stay in the page cache, so a page a later query needs comes
    back by a minor fault. Only ranges holding no anonymous page are dropped: MADV_DONTNEED on a private
    mapping discards a page the loader relocated, which the library file cannot give back. Returns the
    bytes of the ranges dropped (0 where chDB is not loaded or the call is refused)."""
    try:
        lines = smaps_file.read_text().splitlines()
    except OSError:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    dropped = 0
    for low, high in _clean_library_ranges(lines):
        if libc.madvise(low, high - low, _MADV_DONTNEED) != 0:
            logger.debug("madvise(MADV_DONTNEED) on chDB's library failed: errno %d", ctypes.get_errno())
            continue
        dropped += high - low
    return dropped


def release_library_pages_every(interval_s: float, stop: threading.Event) -> None:
    """Calls release_library_pages every `interval_s` until `stop` is set (a service thread's body). Each insert
    with its materialized views faults ~60-90 MiB of chDB's code back in, merges ~30 MiB more; left mapped, the
    code of every kind of work done since start stays under each later peak. Dropped again, a peak holds about
    the code its own export runs."""
    while not stop.wait(interval_s):
        release_library_pages()


def _clean_library_ranges(smaps_lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each mapping of chDB's library that is not writable and has no anonymous page."""
    ranges: list[tuple[int, int]] = []
    candidate: tuple[int, int] | None = None
    for line in smaps_lines:
        fields = line.split(maxsplit=5)
        if _MAPPING_LINE.match(line):
            readonly_library = len(fields) == 6 and _CHDB_LIBRARY.search(fields[5]) and "w" not in fields[1]
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            candidate = (low, high) if readonly_library else None
        elif candidate is not None and fields[0] == "Anonymous:":
            if int(fields[1]) == 0:
                ranges.append(candidate)
            candidate = None
    return ranges
