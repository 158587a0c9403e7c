"""OTLP/HTTP receiver: `POST /v1/traces`, `/v1/logs` (GenAI events) and `/v1/metrics` (refused as partial
success), protobuf or JSON, gzip; plus `/metrics` and `/healthz`. Other paths: 404, counted.

Responses follow the OTLP/HTTP specification: 200 with partial success; 400/401/413/415 with a
google.rpc.Status body (413 also when the decoded batch is over the per-request budget or bigger than
the whole spool); 429 (spool full) and 503 (storage unavailable) with Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agentledger.collector.auth import Unauthenticated
from agentledger.collector.component import PipelineFull, PipelineRejected, PipelineUnavailable, RequestTooLarge
from agentledger.collector.config import HttpProtocolConfig
from agentledger.collector.receivers.otlp_decode import Identity
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.receivers.otlp_payload import (
    Encoding,
    PayloadError,
    PayloadTooLarge,
    decompress,
    encode_response,
    encode_status,
    encoding_of,
    parse_message,
    parse_request,
)

logger = logging.getLogger(__name__)

# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
RETRY_AFTER_SECONDS = 5


Endpoint = Callable[[Request], Awaitable[Response]]
Parse = Callable[[bytes, Encoding], Message]
# The request, who sent it, and the size of its binary protobuf when it came as one (None for JSON).
Export = Callable[[Message, Identity, int | None], Message]


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Refusal:
    http_status: int
    code: int
    message: str


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_otlp_http_app(protocol: HttpProtocolConfig, ingest: OtlpIngest) -> Starlette:
    telemetry = ingest.telemetry
    limit = protocol.max_request_bytes

    def status_response(http_status: int, code: int, message: str, encoding: Encoding) -> Response:
        telemetry.add("agentledger_requests_total", label=("http", str(http_status)))
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if http_status in (429, 503) else {}
        if http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return Response(
            encode_status(code, message, encoding), status_code=http_status, media_type=encoding.value, headers=headers
        )

    def otlp_endpoint(
        parse: Callable[[bytes, Encoding], Message], export: Export
    ) -> Endpoint:
        """One OTLP/HTTP signal endpoint: content type, credentials, size, parse, export, status mapping."""

        async def endpoint(request: Request) -> Response:
            encoding = encoding_of(request.headers.get("content-type", ""))
            if encoding is None:
                return status_response(
                    415,
                    _INVALID_ARGUMENT,
                    "Content-Type must be application/x-protobuf or application/json",
                    Encoding.PROTOBUF,
                )
            try:
                identity = ingest.authenticator.identify(request.headers.get("authorization"))
            except Unauthenticated as error:
                return status_response(401, _UNAUTHENTICATED, str(error), encoding)
            try:
                body = await _read_body(request, limit)
            except _BodyTooLarge:
                return status_response(413, _INVALID_ARGUMENT, f"request body exceeds {limit} bytes", encoding)
            outcome = await run_in_threadpool(
                decode_and_export, parse, export, body, request.headers.get("content-encoding", ""), encoding, identity
            )
            del body  # the worker is done with it; do not hold it while the response is written
            if isinstance(outcome, _Refusal):
                if outcome.http_status == 503:
                    logger.warning("refusing a request: %s", outcome.message)
                return status_response(outcome.http_status, outcome.code, outcome.message, encoding)
            telemetry.add("agentledger_requests_total", label=("http", "200"))
            return Response(encode_response(outcome, encoding), status_code=200, media_type=encoding.value)

        return endpoint

    def decode_and_export(
        parse: Parse,
        export: Export,
        body: bytes,
        content_encoding: str,
        encoding: Encoding,
        identity: Identity,
    ) -> Message | _Refusal:
        """Runs in a worker thread and answers refusals as values, never as exceptions: an exception
        crossing back to the event loop sits in a reference cycle (the awaited future and the frames of
        its traceback) together with the request's body and batch until the garbage collector runs,
        tens of MB per refused request."""
        try:
            data = decompress(body, content_encoding, limit)
            otlp_request = parse(data, encoding)
            encoded_bytes = len(data) if encoding is Encoding.PROTOBUF else None
            del data
        except PayloadTooLarge:
            return _Refusal(413, _INVALID_ARGUMENT, f"request body exceeds {limit} bytes")
        except PayloadError as error:
            return _Refusal(400, _INVALID_ARGUMENT, str(error))
        try:
            return export(otlp_request, identity, encoded_bytes)
        except RequestTooLarge as error:
            # Waiting cannot help, so no Retry-After: the sender must split the request.
            return _Refusal(413, _RESOURCE_EXHAUSTED, f"request refused, too large to accept: {error}")
        except PipelineRejected as error:
            return _Refusal(400, _INVALID_ARGUMENT, f"spans refused for good, do not retry: {error}")
        except PipelineFull as error:
            return _Refusal(429, _RESOURCE_EXHAUSTED, f"collector is full, retry later: {error}")
        except PipelineUnavailable as error:
            return _Refusal(503, _UNAVAILABLE, f"spans could not be stored, retry later: {error}")

    def parse_logs(data: bytes, encoding: Encoding) -> Message:
        return parse_message(data, encoding, ExportLogsServiceRequest(), "resourceLogs", "logs request")

    def parse_metrics(data: bytes, encoding: Encoding) -> Message:
        return parse_message(data, encoding, ExportMetricsServiceRequest(), "resourceMetrics", "metrics request")

    def export_traces(request: Message, identity: Identity, encoded_bytes: int | None) -> Message:
        assert isinstance(request, ExportTraceServiceRequest)
        return ingest.export(request, identity, encoded_bytes)

    def export_logs(request: Message, identity: Identity, _: int | None) -> Message:
        assert isinstance(request, ExportLogsServiceRequest)
        return ingest.export_logs(request, identity)

    def export_metrics(request: Message, _: Identity, __: int | None) -> Message:
        assert isinstance(request, ExportMetricsServiceRequest)
        return ingest.export_metrics(request)

    async def unknown_path(request: Request, _: Exception) -> Response:
        # Counted without the path as a label: senders choose paths, and each would be a new series.
        telemetry.add("agentledger_unknown_paths_total", label=("method", request.method))
        return JSONResponse(
            {"detail": f"no such endpoint {request.url.path!r}: the OTLP receiver serves POST /v1/traces,"
                       " /v1/logs and /v1/metrics, GET /metrics and /healthz"},
            status_code=404,
        )  # fmt: skip

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(telemetry.render_prometheus(), media_type="text/plain; version=0.0.4")

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/traces", otlp_endpoint(parse_request, export_traces), methods=["POST"]),
            Route("/v1/logs", otlp_endpoint(parse_logs, export_logs), methods=["POST"]),
            Route("/v1/metrics", otlp_endpoint(parse_metrics, export_metrics), methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={404: unknown_path},
    )
