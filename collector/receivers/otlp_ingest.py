"""What both OTLP transports do with a decoded request: identify, decode, hand to the pipeline, count.
Traces are stored; GenAI log events become rows of their span (otlp_logs.py); metrics are refused, counted.

The transports (otlp_http.py, otlp_grpc.py) only map these outcomes to their own status codes.
"""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentledger.collector.auth import Authenticator
from agentledger.collector.component import RequestTooLarge
from agentledger.collector.config import OtlpReceiverConfig
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_decode import DecodedSizeExceeded, Identity, decode_request
from agentledger.collector.receivers.otlp_logs import logs_to_spans, metric_data_points
from agentledger.collector.telemetry import CollectorTelemetry


class OtlpIngest:
    def __init__(
        self,
        config: OtlpReceiverConfig,
        pipeline: Pipeline,
        telemetry: CollectorTelemetry,
        authenticator: Authenticator,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.authenticator = authenticator

    def export(
        self, request: ExportTraceServiceRequest, identity: Identity, encoded_bytes: int | None = None
    ) -> ExportTraceServiceResponse:
        """Decodes and stores the request's spans; raises RequestTooLarge, PipelineFull or
        PipelineUnavailable, having counted the refused spans, when nothing could be acknowledged.
        `encoded_bytes`: the size of the binary protobuf the request was parsed from, when known."""
        telemetry = self.telemetry
        try:
            decoded = decode_request(request, identity, self.config.limits, encoded_bytes)
        except DecodedSizeExceeded as error:
            telemetry.add("agentledger_spans_received_total", error.spans)
            telemetry.add("agentledger_spans_refused_total", error.spans, ("reason", "decoded_size_budget"))
            raise RequestTooLarge(str(error)) from error
        for where, count in decoded.reserved_stripped.items():
            telemetry.add("agentledger_reserved_attributes_stripped_total", count, ("where", where))
        received = decoded.batch.num_rows + decoded.rejected_spans
        telemetry.add("agentledger_spans_received_total", received)
        try:
            self.pipeline.consume(decoded.batch)
        except Exception as error:
            telemetry.add("agentledger_spans_refused_total", decoded.batch.num_rows, ("reason", type(error).__name__))
            raise
        telemetry.add("agentledger_spans_accepted_total", decoded.batch.num_rows)
        for kind, count in decoded.truncated.items():
            telemetry.add("agentledger_spans_truncated_total", count, ("what", kind))
        if decoded.identity_mismatches:
            telemetry.add("agentledger_identity_mismatches_total", decoded.identity_mismatches)
        response = ExportTraceServiceResponse()
        if decoded.rejected_spans:
            for reason, count in decoded.rejected.items():
                telemetry.add("agentledger_spans_rejected_total", count, ("reason", reason))
            response.partial_success.rejected_spans = decoded.rejected_spans
            response.partial_success.error_message = decoded.rejection_message
        return response

    def export_logs(self, request: ExportLogsServiceRequest, identity: Identity) -> ExportLogsServiceResponse:
        """Stores the request's GenAI events as rows of their spans, through the span path (limits,
        processors, spool); answers the records not stored as partial success. Raises as export() does."""
        telemetry = self.telemetry
        conversion = logs_to_spans(request)
        events = sum(
            len(scope.spans) for resource in conversion.traces.resource_spans for scope in resource.scope_spans
        )
        telemetry.add("agentledger_log_records_received_total", events + conversion.dropped_total)
        for reason, count in conversion.dropped.items():
            telemetry.add("agentledger_log_records_dropped_total", count, ("reason", reason))
        response = ExportLogsServiceResponse()
        messages = [conversion.message()] if conversion.dropped else []
        rejected = conversion.dropped_total
        if events:
            traces_response = self.export(conversion.traces, identity)
            telemetry.add(
                "agentledger_log_records_accepted_total", events - traces_response.partial_success.rejected_spans
            )
            if traces_response.partial_success.rejected_spans:
                rejected += traces_response.partial_success.rejected_spans
                messages.append(traces_response.partial_success.error_message)
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = "; ".join(messages)
        return response

    def export_metrics(self, request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
        """agentledger stores no metrics: every data point is answered as rejected, with why, and counted."""
        points = metric_data_points(request)
        self.telemetry.add("agentledger_metric_points_dropped_total", points)
        response = ExportMetricsServiceResponse()
        if points:
            response.partial_success.rejected_data_points = points
            response.partial_success.error_message = (
                f"{points} data point(s) dropped: agentledger stores traces and GenAI log events, not metrics;"
                " send metrics to a metrics backend"
            )
        return response
