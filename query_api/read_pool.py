"""Runs a request's independent reads at once, each on a ClickHouse client of its own, and gives each
request a client of its own for the rest of its reads.

A timeline is seven statements; each costs a few milliseconds of planning in ClickHouse before it reads a
row, and one after another that fixed cost alone was most of the request (benchmarks/query.py --queries).
Most of them depend only on the run's id or on its index row, so they can run at the same time.

- Embedded chDB: one handle serialises its calls (clickhouse-connect holds a lock per handle), but handles
  opened on the same engine path share its data and run in parallel (two timeline span reads: 37.6 ms one
  after the other, 21.4 ms at once, on 2 cores). So the pool opens handles of its own, one per read or
  request at once. None is the process's main client, so an API request never waits behind the
  collector's insert there either.
- A ClickHouse server: an HTTP client without a session id is thread-safe, so every worker reads through
  the one client and the server runs the statements at once.

A read given to the pool must not wait for another read of the pool (a worker waiting on a queued read
could wait forever); a read that needs another's answer runs after it, inside the same callable.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

T = TypeVar("T")

# Workers per pool: the machines we size for have 2 cores, and a third worker only queued behind them.
DEFAULT_WORKERS = 2


class Reads(Protocol):
    """Where a request's reads run: `submit(read)` starts `read(client)` and returns its future."""

    def submit(self, read: Callable[[Client], T]) -> Future[T]: ...

    def lease(self) -> AbstractContextManager[Client]: ...

    def close(self) -> None: ...


class InlineReads:
    """Each read at once on the caller's thread, through one client: for callers that run outside a
    request (the Phoenix sync, metrics, scripts) or that must read one after another."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(self, read: Callable[[Client], T]) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(read(self._client))
        except BaseException as error:  # the caller's .result() raises it, as a pool's future would
            future.set_exception(error)
        return future

    @contextmanager
    def lease(self) -> Iterator[Client]:
        yield self._client

    def close(self) -> None:
        """The client is the caller's to close."""


def handle_opener(client: Client, settings: Mapping[str, str | int] | None = None) -> tuple[Callable[[], Client], bool]:
    """How a pool beside `client` gets a client, and whether it owns (closes) those: for embedded chDB a
    new handle on the client's engine path and database, with these client `settings`; for a ClickHouse
    server the client itself."""
    # Imported here: the chDB backend module loads chDB, whose allocator options `agentledger up` sets
    # before it loads (ingest/embedded_memory.py). clickhouse-connect (>= 1.12) does not re-export the class.
    from clickhouse_connect.driver._chdbclient import ChdbClient

    if isinstance(client, ChdbClient):
        path, database = client.path, client.database

        def open_handle() -> Client:
            return clickhouse_connect.get_client(dsn=f"chdb://{path}", database=database, settings=dict(settings or {}))

        return open_handle, True
    return (lambda: client), False


def _close_all(handles: list[Client]) -> None:
    for handle in handles:
        handle.close()


class ReadPool:
    """A fixed number of workers, each reading through a client taken from the pool's free handles
    (opened on first need with `open_client`; `owned` says whether the pool closes them); requests lease
    handles from the same free list for their reads in turn (query_api/dependencies.py)."""

    def __init__(self, open_client: Callable[[], Client], workers: int = DEFAULT_WORKERS, owned: bool = True) -> None:
        if workers < 1:
            raise ValueError(f"a read pool needs at least one worker, not {workers}")
        self._open_client = open_client
        self._owned = owned
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="agentledger-read")
        self._free: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._opened: list[Client] = []
        self._lock = threading.Lock()
        self._closed = False
        # A pool dropped without close() (a test's app) still closes its handles; the executor's idle
        # workers end once it is collected.
        self._finalizer = weakref.finalize(self, _close_all, self._opened if owned else [])

    @classmethod
    def beside(
        cls, client: Client, workers: int = DEFAULT_WORKERS, settings: Mapping[str, str | int] | None = None
    ) -> ReadPool:
        """A pool reading what `client` reads (handle_opener)."""
        open_client, owned = handle_opener(client, settings)
        return cls(open_client, workers, owned)

    def submit(self, read: Callable[[Client], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the read pool is closed")
        return self._executor.submit(self._run, read)  # its worker leases a handle as a request does

    def _run(self, read: Callable[[Client], T]) -> T:
        with self.lease() as client:
            return read(client)

    @contextmanager
    def lease(self) -> Iterator[Client]:
        """A client of the pool's for the caller alone while inside (a request's own reads in turn): a free
        handle, or a new one, so there are as many handles as reads and requests at once."""
        if self._closed:
            raise RuntimeError("the read pool is closed")
        try:
            client = self._free.get_nowait()
        except queue.Empty:
            client = self._open_client()
            if self._owned:
                with self._lock:
                    self._opened.append(client)
        try:
            yield client
        finally:
            self._free.put(client)

    def close(self) -> None:
        """Waits for running reads, then closes the handles the pool opened (before the main client: chDB
        keeps the engine open while any handle is)."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._finalizer()
