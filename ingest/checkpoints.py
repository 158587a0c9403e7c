"""Signed checkpoints of each collector's log (size and RFC 9162 Merkle root), kept in the
audit_checkpoints table and, outside ClickHouse, in an append-only JSON-lines file per tenant and
collector, so someone who can rewrite the database cannot rewrite what the checkpoints committed to."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import quote, unquote

from agentledger.schema.canonical import int_field, sha256_text, text_field

CHECKPOINT_FORMAT: Final = "agentledger.checkpoint.v1"
CHECKPOINTS_TABLE: Final = "audit_checkpoints"
_SUFFIX: Final = ".checkpoints.jsonl"


class CheckpointFileError(ValueError):
    """A checkpoint file cannot be read or holds a line that is not a checkpoint; the message says where."""


@dataclass(frozen=True)
class Checkpoint:
    tenant: str
    collector_id: str
    size: int
    root: str
    time_ns: int
    signature: str = ""
    format: str = CHECKPOINT_FORMAT

    COLUMNS: ClassVar[tuple[str, ...]] = ("tenant", "collector_id", "size", "root", "time_ns", "format",
                                          "signature")  # fmt: skip

    def body(self) -> bytes:
        """The signed bytes: every field but the signature, length-prefixed (AUDIT_CHAIN.md)."""
        return b"".join([text_field(self.format), text_field(self.tenant), text_field(self.collector_id),
                         int_field(self.size), text_field(self.root), int_field(self.time_ns)])  # fmt: skip

    def hash(self) -> str:
        return sha256_text(self.body())

    def signed(self, signature: str) -> Checkpoint:
        return replace(self, signature=signature)

    def row(self) -> list[Any]:
        return [self.tenant, self.collector_id, self.size, self.root, self.time_ns, self.format, self.signature]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "tenant": self.tenant, "collector_id": self.collector_id, "size": self.size,
                "root": self.root, "time_ns": self.time_ns, "signature": self.signature}  # fmt: skip

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(
                tenant=_text(value["tenant"]), collector_id=_text(value["collector_id"]), size=_int(value["size"]),
                root=_text(value["root"]), time_ns=_int(value["time_ns"]), signature=_text(value.get("signature", "")),
                format=_text(value["format"]),
            )  # fmt: skip
        except KeyError as missing:
            raise ValueError(f"missing {missing}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


class CheckpointSink:
    """Appends checkpoints to `<directory>/<tenant>~<collector id>.checkpoints.jsonl` (tenant URL-quoted),
    fsynced before the table insert, so the file holds every checkpoint the table does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, tenant: str, collector_id: str) -> Path:
        return self.directory / f"{quote(tenant, safe='')}~{collector_id}{_SUFFIX}"

    def append(self, checkpoint: Checkpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(checkpoint.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        with open(self.path(checkpoint.tenant, checkpoint.collector_id), "a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())


def read_checkpoints(directory: Path, tenant: str | None = None) -> list[Checkpoint]:
    """Every checkpoint in the sink directory (optionally one tenant's), in file then line order. A torn
    last line (a crash mid-write) is skipped; any other bad line is an error naming the file and line."""
    found: list[Checkpoint] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        file_tenant = unquote(path.name.split("~", 1)[0])
        if tenant is not None and file_tenant != tenant:
            continue
        found.extend(_read_file(path))
    return found


def _read_file(path: Path) -> Iterator[Checkpoint]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointFileError(f"cannot read checkpoint file {path}: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Checkpoint.from_json(json.loads(line))
        except ValueError as error:
            if number == len(lines):  # no newline after it: written partly when the process died
                continue
            raise CheckpointFileError(f"{path}, line {number}: not a checkpoint ({error})") from None


def latest_checkpoints(checkpoints: list[Checkpoint]) -> dict[tuple[str, str], Checkpoint]:
    """The largest checkpoint of each (tenant, collector id) log."""
    latest: dict[tuple[str, str], Checkpoint] = {}
    for checkpoint in checkpoints:
        key = (checkpoint.tenant, checkpoint.collector_id)
        current = latest.get(key)
        if current is None or (checkpoint.size, checkpoint.time_ns) > (current.size, current.time_ns):
            latest[key] = checkpoint
    return latest
