"""Exponential back-off with jitter shared by every component that retries (exporter workers today)."""

from __future__ import annotations

import random
import threading

from agentledger.collector.config import RetryConfig


class Backoff:
    """Successive waits: initial, initial*multiplier, ... capped at max, each randomised by
    randomization_factor; reset() after a success."""

    def __init__(self, config: RetryConfig) -> None:
        self._config = config
        self._next = config.initial_interval_s
        self._random = random.Random()

    def reset(self) -> None:
        self._next = self._config.initial_interval_s

    def wait(self, stop: threading.Event) -> bool:
        """Sleeps the next interval; returns False if `stop` was set meanwhile."""
        interval = self._next
        self._next = min(self._next * self._config.multiplier, self._config.max_interval_s)
        spread = self._config.randomization_factor
        return not stop.wait(interval * self._random.uniform(1 - spread, 1 + spread))
