"""What a run id (agent.run.id) may be: any UTF-8 text of 1 to MAX_RUN_ID_BYTES bytes. The collector
rejects spans with a longer one and every query API endpoint taking a run id applies the same rule."""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import quote

# Room for composite ids (tenant/workflow/ticket/uuid) with non-Latin text, yet small enough for a URL
# path segment (3 bytes per encoded byte) and a ClickHouse sort key.
MAX_RUN_ID_BYTES: Final = 1024


def run_id_problem(run_id: str) -> str | None:
    """Why run_id is not a valid run id, as a sentence; None when it is one."""
    if not run_id:
        return "the run id is empty"
    try:
        size = len(run_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "the run id is not valid UTF-8 (it holds a lone surrogate)"
    if size > MAX_RUN_ID_BYTES:
        return f"the run id is {size} bytes of UTF-8; at most {MAX_RUN_ID_BYTES} are allowed"
    return None


def checked_run_id(run_id: str) -> str:
    """run_id itself when valid; ValueError with the reason otherwise (a pydantic validator)."""
    problem = run_id_problem(run_id)
    if problem is not None:
        raise ValueError(problem)
    return run_id


# File names made from run ids stay well under the usual 255-byte limit of a file name.
MAX_FILE_STEM_BYTES: Final = 120
# Characters no file name gets: path separators and what Windows or a shell would misread.
_UNSAFE_IN_FILE_NAMES: Final = frozenset('/\\:*?"<>|')


def run_id_file_stem(run_id: str, ascii_only: bool = False) -> str:
    """A file-name-safe form of run_id: control characters, path separators and (ascii_only) non-ASCII
    characters become `_`, long ids are cut; an altered id gets a digest suffix of the original, so two
    run ids never share a file name."""
    altered = False
    kept: list[str] = []
    for character in run_id:
        code = ord(character)
        if code < 0x20 or 0x7F <= code < 0xA0 or character in _UNSAFE_IN_FILE_NAMES or (ascii_only and code > 0x7E):
            kept.append("_")
            altered = True
        else:
            kept.append(character)
    stem = "".join(kept)
    encoded = stem.encode("utf-8", "replace")
    if len(encoded) > MAX_FILE_STEM_BYTES:
        stem = encoded[:MAX_FILE_STEM_BYTES].decode("utf-8", "ignore")
        altered = True
    if stem.startswith("."):  # never a hidden file, never `.` or `..`
        stem = "_" + stem[1:]
        altered = True
    if altered:
        stem += "-" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return stem


def evidence_file_name(run_id: str, ascii_only: bool = False) -> str:
    """The evidence bundle's file name, as the API offers it and the CLI saves it by default."""
    return f"agentledger-evidence-{run_id_file_stem(run_id, ascii_only)}.zip"


def run_id_path_segment(run_id: str) -> str:
    """run_id as one URL path segment: every reserved byte percent-encoded (`/` as %2F), and dots too,
    because clients resolve a literal `.` or `..` segment before sending the request."""
    return quote(run_id, safe="").replace(".", "%2E")


def run_page_url(base_url: str, run_id: str) -> str:
    """The responder page of a run (the query API's /ui): what log lines, CLI output, the Markdown report
    and Phoenix backlinks point at, rather than the raw JSON."""
    return f"{base_url.rstrip('/')}/ui?run={quote(run_id, safe='')}"
