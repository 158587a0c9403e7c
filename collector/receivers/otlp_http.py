"""OTLP/HTTP receiver: `POST /v1/traces` (protobuf or JSON, gzip), plus `/metrics` and `/healthz`.

Responses follow the OTLP/HTTP specification: 200 with partial success; 400/401/413/415 with a
google.rpc.Status body (413 also when the decoded batch is over the per-request budget or bigger than
the whole spool); 429 (spool full) and 503 (storage unavailable) with Retry-After.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
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
    parse_request,
)

logger = logging.getLogger(__name__)

# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
RETRY_AFTER_SECONDS = 5


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

    async def export_traces(request: Request) -> Response:
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
            decode_and_export, body, request.headers.get("content-encoding", ""), encoding, identity
        )
        del body  # the worker is done with it; do not hold it while the response is written
        if isinstance(outcome, _Refusal):
            if outcome.http_status == 503:
                logger.warning("refusing a request: %s", outcome.message)
            return status_response(outcome.http_status, outcome.code, outcome.message, encoding)
        telemetry.add("agentledger_requests_total", label=("http", "200"))
        return Response(encode_response(outcome, encoding), status_code=200, media_type=encoding.value)

    def decode_and_export(
        body: bytes, content_encoding: str, encoding: Encoding, identity: Identity
    ) -> ExportTraceServiceResponse | _Refusal:
        """Runs in a worker thread and answers refusals as values, never as exceptions: an exception
        crossing back to the event loop sits in a reference cycle (the awaited future and the frames of
        its traceback) together with the request's body and batch until the garbage collector runs,
        tens of MB per refused request."""
        try:
            otlp_request = parse_request(decompress(body, content_encoding, limit), encoding)
        except PayloadTooLarge:
            return _Refusal(413, _INVALID_ARGUMENT, f"request body exceeds {limit} bytes")
        except PayloadError as error:
            return _Refusal(400, _INVALID_ARGUMENT, str(error))
        try:
            return ingest.export(otlp_request, identity)
        except RequestTooLarge as error:
            # Waiting cannot help, so no Retry-After: the sender must split the request.
            return _Refusal(413, _RESOURCE_EXHAUSTED, f"request refused, too large to accept: {error}")
        except PipelineRejected as error:
            return _Refusal(400, _INVALID_ARGUMENT, f"spans refused for good, do not retry: {error}")
        except PipelineFull as error:
            return _Refusal(429, _RESOURCE_EXHAUSTED, f"collector is full, retry later: {error}")
        except PipelineUnavailable as error:
            return _Refusal(503, _UNAVAILABLE, f"spans could not be stored, retry later: {error}")

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(telemetry.render_prometheus(), media_type="text/plain; version=0.0.4")

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/traces", export_traces, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
