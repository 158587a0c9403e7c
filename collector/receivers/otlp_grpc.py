"""OTLP/gRPC receiver: the TraceService, LogsService (GenAI events) and MetricsService (refused as partial
success) `Export` methods of `opentelemetry.proto.collector.*.v1`.

Status codes per the OTLP specification: INVALID_ARGUMENT for bad payloads, UNAUTHENTICATED,
RESOURCE_EXHAUSTED with RetryInfo when the spool is full, without it when the request can never fit
(decoded-size budget, bigger than the spool), UNAVAILABLE when storage is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentledger.collector.auth import Unauthenticated
from agentledger.collector.component import PipelineFull, PipelineRejected, PipelineUnavailable, RequestTooLarge
from agentledger.collector.config import GrpcProtocolConfig
from agentledger.collector.receivers.otlp_decode import Identity
from agentledger.collector.receivers.otlp_http import RETRY_AFTER_SECONDS
from agentledger.collector.receivers.otlp_ingest import OtlpIngest

ResponseT = TypeVar("ResponseT")

logger = logging.getLogger(__name__)


class GrpcReceiverError(RuntimeError):
    """The gRPC listener could not start; the message names the endpoint."""


def _retryable(code: int, message: str) -> grpc.Status:
    retry_info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_SECONDS))
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[detail]))


def _export(ingest: OtlpIngest, context: grpc.ServicerContext, export: Callable[[Identity], ResponseT]) -> ResponseT:
    """Identifies the sender, runs `export` and maps its refusals to gRPC statuses, counting each answer."""
    telemetry = ingest.telemetry
    metadata = dict(context.invocation_metadata())
    try:
        identity = ingest.authenticator.identify(metadata.get("authorization"))
    except Unauthenticated as error:
        telemetry.add("agentledger_requests_total", label=("grpc", "UNAUTHENTICATED"))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
    try:
        response = export(identity)
    except RequestTooLarge as error:
        # No RetryInfo: per OTLP, RESOURCE_EXHAUSTED without it tells the sender that retrying the same
        # request cannot succeed.
        telemetry.add("agentledger_requests_total", label=("grpc", "RESOURCE_EXHAUSTED"))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request refused, too large to accept: {error}")
    except PipelineRejected as error:
        telemetry.add("agentledger_requests_total", label=("grpc", "INVALID_ARGUMENT"))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"spans refused for good, do not retry: {error}")
    except PipelineFull as error:
        telemetry.add("agentledger_requests_total", label=("grpc", "RESOURCE_EXHAUSTED"))
        context.abort_with_status(_retryable(code_pb2.RESOURCE_EXHAUSTED, f"collector is full, retry later: {error}"))
    except PipelineUnavailable as error:
        logger.warning("refusing a request: %s", error)
        telemetry.add("agentledger_requests_total", label=("grpc", "UNAVAILABLE"))
        context.abort_with_status(_retryable(code_pb2.UNAVAILABLE, f"spans could not be stored, retry later: {error}"))
    telemetry.add("agentledger_requests_total", label=("grpc", "OK"))
    return response


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: OtlpIngest) -> None:
        self._ingest = ingest

    def Export(  # the generated service's method name
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        return _export(self._ingest, context, lambda identity: self._ingest.export(request, identity))


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    """GenAI log events become rows of their span (otlp_logs.py); other records are answered as rejected."""

    def __init__(self, ingest: OtlpIngest) -> None:
        self._ingest = ingest

    def Export(self, request: ExportLogsServiceRequest, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        return _export(self._ingest, context, lambda identity: self._ingest.export_logs(request, identity))


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Metrics are not stored: every data point is answered as rejected, with why, and counted."""

    def __init__(self, ingest: OtlpIngest) -> None:
        self._ingest = ingest

    def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        return _export(self._ingest, context, lambda _: self._ingest.export_metrics(request))


def start_grpc_server(protocol: GrpcProtocolConfig, ingest: OtlpIngest) -> grpc.Server:
    """Starts serving on the configured endpoint; messages over max_request_bytes get RESOURCE_EXHAUSTED
    from gRPC itself, and a payload that does not parse gets INVALID_ARGUMENT."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=protocol.max_workers, thread_name_prefix="otlp-grpc"),
        options=[
            ("grpc.max_receive_message_length", protocol.max_request_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(ingest), server)  # type: ignore[no-untyped-call]
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(ingest), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(ingest), server)  # type: ignore[no-untyped-call]
    host = f"[{protocol.host}]" if ":" in protocol.host else protocol.host
    try:
        bound = server.add_insecure_port(f"{host}:{protocol.port}")
    except RuntimeError as error:
        raise GrpcReceiverError(f"cannot listen for OTLP/gRPC on {protocol.endpoint}: {error}") from error
    if bound == 0:
        raise GrpcReceiverError(f"cannot listen for OTLP/gRPC on {protocol.endpoint}: the address is in use")
    server.start()
    return server
