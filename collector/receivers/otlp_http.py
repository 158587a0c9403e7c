"""OTLP/HTTP receiver: `POST /v1/traces` (protobuf or JSON, gzip), plus `/metrics` and `/healthz`.

Responses follow the OTLP/HTTP specification: 200 with partial success, 400/413/415 with a
google.rpc.Status body, 503 with Retry-After when the pipeline cannot store the batch.
"""

from __future__ import annotations

import logging

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agentledger.collector.component import ExportError
from agentledger.collector.config import OtlpHttpReceiverConfig
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_decode import DecodedBatch, decode_request
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
from agentledger.collector.telemetry import CollectorTelemetry

logger = logging.getLogger(__name__)

# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_RETRY_AFTER_SECONDS = "5"


class _BodyTooLarge(Exception):
    pass


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


def create_otlp_http_app(
    config: OtlpHttpReceiverConfig, pipeline: Pipeline, telemetry: CollectorTelemetry
) -> Starlette:
    def status_response(http_status: int, code: int, message: str, encoding: Encoding) -> Response:
        telemetry.add("agentledger_requests_total", label=("outcome", str(http_status)))
        headers = {"Retry-After": _RETRY_AFTER_SECONDS} if http_status in (429, 503) else None
        return Response(
            encode_status(code, message, encoding),
            status_code=http_status,
            media_type=encoding.value,
            headers=headers,
        )

    def store(decoded: DecodedBatch) -> None:
        pipeline.consume(decoded.batch)

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
            body = await _read_body(request, config.max_request_bytes)
            data = decompress(body, request.headers.get("content-encoding", ""), config.max_request_bytes)
            otlp_request = parse_request(data, encoding)
        except (_BodyTooLarge, PayloadTooLarge):
            return status_response(
                413, _INVALID_ARGUMENT, f"request body exceeds {config.max_request_bytes} bytes", encoding
            )
        except PayloadError as error:
            return status_response(400, _INVALID_ARGUMENT, str(error), encoding)

        decoded = await run_in_threadpool(decode_request, otlp_request, config.tenant)
        received = decoded.batch.num_rows + decoded.rejected_spans
        telemetry.add("agentledger_spans_received_total", received)
        try:
            await run_in_threadpool(store, decoded)
        except ExportError as error:
            logger.warning("refusing %d spans: %s", received, error)
            return status_response(503, _UNAVAILABLE, f"spans could not be stored, retry later: {error}", encoding)
        telemetry.add("agentledger_spans_accepted_total", decoded.batch.num_rows)
        response = ExportTraceServiceResponse()
        if decoded.rejected_spans:
            telemetry.add("agentledger_spans_rejected_total", decoded.rejected_spans, ("reason", "invalid_id"))
            response.partial_success.rejected_spans = decoded.rejected_spans
            response.partial_success.error_message = decoded.rejection_message
        telemetry.add("agentledger_requests_total", label=("outcome", "200"))
        return Response(encode_response(response, encoding), status_code=200, media_type=encoding.value)

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
