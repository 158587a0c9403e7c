"""Retention and legal holds at write time: each span's retain_until, and whether a hold covers it.

ClickHouse's TTL (migration 0007) deletes spans past retain_until unless legal_hold is set; holds on
runs are mirrored onto stored spans when placed, holds on agents also onto spans that arrive later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

# 2105-12-31T00:00:00Z, the "keep" value: DateTime's range ends in 2106.
KEEP_FOREVER: Final = 4_291_747_200
_DAY_SECONDS: Final = 86_400

ACTIVE_AGENT_HOLDS: Final = """
SELECT tenant, target FROM legal_holds FINAL
WHERE scope = 'agent' AND released_at IS NULL
"""


@dataclass(frozen=True)
class RetentionPolicy:
    # 0 keeps spans forever.
    default_days: int = 0
    tenant_days: Mapping[str, int] = field(default_factory=dict)

    def retain_until(self, batch: pa.Table) -> pa.Array:
        """Unix seconds per row: start time plus the tenant's retention, or KEEP_FOREVER."""
        start_seconds = pc.divide(pc.cast(batch["start_time"], pa.int64()), 1_000_000_000)
        tenants = pc.dictionary_encode(batch["tenant"]).combine_chunks()
        days_by_tenant = [self.tenant_days.get(t, self.default_days) for t in tenants.dictionary.to_pylist()]
        days = pc.take(pa.array(days_by_tenant, pa.int64()), tenants.indices)
        until = pc.min_element_wise(pc.add(start_seconds, pc.multiply(days, _DAY_SECONDS)), KEEP_FOREVER)
        return pc.if_else(pc.equal(days, 0), pa.scalar(KEEP_FOREVER, pa.int64()), until)


class AgentHolds:
    """Active holds on agents, re-read at most every `refresh_seconds` (placing a hold also marks the
    spans already stored, so a short lag here only concerns spans in flight)."""

    def __init__(self, client: Client, refresh_seconds: float = 5.0) -> None:
        self._client = client
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._keys: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def _current(self) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self._refresh:
                rows = self._client.query(ACTIVE_AGENT_HOLDS).result_rows
                self._keys = frozenset(f"{tenant}\x00{agent}" for tenant, agent in rows)
                self._loaded_at = time.monotonic()
            return self._keys

    def legal_hold(self, batch: pa.Table) -> pa.Array:
        """1 for rows whose agent (claimed or verified) is under an active hold in their tenant."""
        keys = self._current()
        if not keys:
            return pa.array([0] * batch.num_rows, pa.uint8())
        held = pa.array(sorted(keys), pa.string())
        claimed = pc.is_in(pc.binary_join_element_wise(batch["tenant"], batch["agent_id"], "\x00"), held)
        verified = pc.is_in(pc.binary_join_element_wise(batch["tenant"], batch["verified_agent_id"], "\x00"), held)
        return pc.cast(pc.or_(claimed, verified), pa.uint8())
