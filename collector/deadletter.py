"""The dead-letter store: spans a destination refused for good, kept on disk with the reason, per exporter,
until someone replays them (`agentledger deadletter replay`) or deletes them.

Layout: <spool>/deadletter/<exporter>/<id>.arrow (the spans, Arrow IPC), <id>.json (what happened), and
<id>.replay (asked for replay: the exporter's worker, running or at its next start, takes it). Plain files,
so the CLI reads them while `agentledger up` runs. An entry exists once its .json does; both are fsynced
before the spool cursor moves past the spans.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agentledger.collector.spool import decode_batch, encode_batch, fsync_directory

DEADLETTER_FOLDER = "deadletter"


class DeadLetterError(RuntimeError):
    """An entry does not exist or cannot be read; the message names it."""


@dataclass(frozen=True)
class DeadLetterEntry:
    id: str
    exporter: str
    reason: str
    error: str
    time: str
    span_count: int
    batch_id: str
    tenants: tuple[str, ...]
    replay_requested: bool = False


def entry_id(batch_id: str, reason: str) -> str:
    """Stable for a batch and reason: a crash before the spool cursor commits rewrites the same entry."""
    return hashlib.sha256(f"{batch_id}\n{reason}".encode()).hexdigest()[:16]


def exporter_folder_name(exporter: str) -> str:
    # Component ids are `type[/name]`; the slash cannot be part of a file name.
    return exporter.replace("/", "+")


class DeadLetterStore:
    """One exporter's entries. Writes come from its export worker only; the CLI only adds replay markers."""

    def __init__(self, spool_directory: Path, exporter: str) -> None:
        self.exporter = exporter
        self.folder = spool_directory / DEADLETTER_FOLDER / exporter_folder_name(exporter)

    def put(self, batch: pa.Table, batch_id: str, reason: str, error: str) -> DeadLetterEntry:
        """Writes the entry durably (data, then metadata, each fsynced, then the folder)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tenants = (
            sorted(str(t) for t in pc.unique(batch["tenant"]).to_pylist()) if "tenant" in batch.schema.names else []
        )
        entry = DeadLetterEntry(
            id=entry_id(batch_id, reason),
            exporter=self.exporter,
            reason=reason,
            error=error,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
            span_count=batch.num_rows,
            batch_id=batch_id,
            tenants=tuple(tenants),
        )
        _write_durably(self.folder / f"{entry.id}.arrow", encode_batch(batch))
        metadata = {key: value for key, value in asdict(entry).items() if key != "replay_requested"}
        _write_durably(self.folder / f"{entry.id}.json", json.dumps(metadata, indent=2).encode())
        fsync_directory(self.folder)
        return entry

    def entries(self) -> list[DeadLetterEntry]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            entry = _read_entry(path)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda entry: (entry.time, entry.id))

    def marked_for_replay(self) -> list[DeadLetterEntry]:
        return [entry for entry in self.entries() if entry.replay_requested]

    def read(self, entry: DeadLetterEntry) -> pa.Table:
        try:
            return decode_batch((self.folder / f"{entry.id}.arrow").read_bytes())
        except (OSError, pa.ArrowInvalid) as error:
            raise DeadLetterError(
                f"dead-letter entry {entry.id} of {entry.exporter} cannot be read: {error}"
            ) from error

    def remove(self, entry: DeadLetterEntry) -> None:
        """Metadata first: an entry without it is no entry, so a crash midway leaves no half entry listed."""
        for suffix in (".json", ".arrow", ".replay"):
            (self.folder / f"{entry.id}{suffix}").unlink(missing_ok=True)
        fsync_directory(self.folder)

    def count(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0


def all_entries(spool_directory: Path) -> list[DeadLetterEntry]:
    """Every exporter's entries, oldest first (for the CLI)."""
    root = spool_directory / DEADLETTER_FOLDER
    found: list[DeadLetterEntry] = []
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        entry = _read_entry(path)
        if entry is not None:
            found.append(entry)
    return sorted(found, key=lambda entry: (entry.time, entry.id))


def find_entry(spool_directory: Path, entry_id_text: str) -> DeadLetterEntry:
    for entry in all_entries(spool_directory):
        if entry.id == entry_id_text:
            return entry
    raise DeadLetterError(f"no dead-letter entry with id {entry_id_text!r} (see `agentledger deadletter list`)")


def mark_for_replay(spool_directory: Path, entry: DeadLetterEntry) -> None:
    """Asks the entry's export worker to export it again (now if `up` runs, else at its next start)."""
    folder = spool_directory / DEADLETTER_FOLDER / exporter_folder_name(entry.exporter)
    _write_durably(folder / f"{entry.id}.replay", f"{time.time()}\n".encode())


def read_entry_spans(spool_directory: Path, entry: DeadLetterEntry) -> pa.Table:
    return DeadLetterStore(spool_directory, entry.exporter).read(entry)


def _read_entry(path: Path) -> DeadLetterEntry | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return DeadLetterEntry(
            id=str(state["id"]),
            exporter=str(state["exporter"]),
            reason=str(state["reason"]),
            error=str(state["error"]),
            time=str(state["time"]),
            span_count=int(state["span_count"]),
            batch_id=str(state["batch_id"]),
            tenants=tuple(str(t) for t in state["tenants"]),
            replay_requested=path.with_suffix(".replay").exists(),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written, or removed meanwhile


def iter_spans_summary(batch: pa.Table, limit: int) -> Iterator[str]:
    """One line per span (tenant, trace:span, name) for `deadletter show`."""
    columns = [name for name in ("tenant", "trace_id", "span_id", "name", "start_time") if name in batch.schema.names]
    for row in batch.select(columns).slice(0, limit).to_pylist():
        yield "  ".join(str(row[name]) for name in columns)


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
