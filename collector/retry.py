"""Exponential back-off shared by every component that retries (exporter workers today)."""

from __future__ import annotations

import threading

from agentledger.collector.config import RetryConfig


class Backoff:
    """Successive waits: initial, initial*multiplier, ... capped at max; reset() after a success."""

    def __init__(self, config: RetryConfig) -> None:
        self._config = config
        self._next = config.initial_interval_s

    def reset(self) -> None:
        self._next = self._config.initial_interval_s

    def wait(self, stop: threading.Event) -> bool:
        """Sleeps the next interval; returns False if `stop` was set meanwhile."""
        interval = self._next
        self._next = min(self._next * self._config.multiplier, self._config.max_interval_s)
        return not stop.wait(interval)
