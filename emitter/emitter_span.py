"""The base of the emitter's helpers: a span of the current run, opened on enter and ended on exit,
usable as a context manager and as a decorator."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager, ContextDecorator
from types import TracebackType
from typing import Self, TypeVar

from opentelemetry.trace import Span, SpanKind

from agentledger.emitter.content import Attributes
from agentledger.emitter.run_context import ContentCapture, EmitterError, RunState, current_run
from agentledger.schema import conventions as conv

F = TypeVar("F", bound=Callable[..., object])


def refuse_coroutine(func: Callable[..., object]) -> None:
    # The span would end when the coroutine is created, not when it finishes: wrong timing, wrong parent.
    if inspect.iscoroutinefunction(func):
        raise EmitterError(f"{func.__qualname__} is a coroutine function; use the helper as `with` inside it")


class EmitterSpan(ContextDecorator):
    """Starts a span of the current run on enter and ends it on exit; subclasses say what it records."""

    _span_kind: SpanKind = SpanKind.INTERNAL

    def __init__(self) -> None:
        self._run: RunState | None = None
        self._scope: AbstractContextManager[Span] | None = None
        self._span: Span | None = None

    def _recreate_cm(self) -> Self:
        # A decorated function gets a fresh span per call, not the decorator's shared instance.
        fresh = copy.copy(self)
        fresh._run, fresh._scope, fresh._span = None, None, None
        return fresh

    def __call__(self, func: F) -> F:
        refuse_coroutine(func)
        return super().__call__(func)

    @property
    def span(self) -> Span:
        if self._span is None:
            raise EmitterError("the span exists only inside the `with` block")
        return self._span

    @property
    def run_id(self) -> str:
        if self._run is None:
            raise EmitterError("the run id is known only inside the `with` block")
        return self._run.run_id

    def _name(self) -> str:
        raise NotImplementedError

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        raise NotImplementedError

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        return {}

    def _enter_run(self) -> RunState:
        return current_run()

    def __enter__(self) -> Self:
        run = self._enter_run()
        self._run = run
        # Every span of a run carries the run id, and OpenInference's session id so Phoenix groups the run.
        attributes: Attributes = {conv.AGENT_RUN_ID: run.run_id, conv.SESSION_ID: run.run_id}
        attributes.update(self._start_attributes(run.capture))
        self._scope = run.tracer.start_as_current_span(self._name(), kind=self._span_kind, attributes=attributes)
        self._span = self._scope.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._scope is None or self._span is None or self._run is None:
            raise EmitterError("exit without enter")
        try:
            self._span.set_attributes(self._end_attributes(self._run.capture, exc is not None))
        finally:
            self._scope.__exit__(exc_type, exc, traceback)
            self._scope, self._span = None, None
