"""Parses OTLP/HTTP request bodies (traces, logs, metrics) (protobuf or JSON, optionally gzip) and encodes responses.

OTLP JSON differs from protobuf's JSON mapping: trace and span ids are hex, not base64, so they are
converted before parsing.
"""

from __future__ import annotations

import base64
import json
import zlib
from enum import Enum
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)


class PayloadError(ValueError):
    """The request body cannot be decoded; the message is safe to return to the client."""


class PayloadTooLarge(PayloadError):
    """The (decompressed) request body is over the configured limit."""


class Encoding(Enum):
    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


def encoding_of(content_type: str) -> Encoding | None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("application/x-protobuf", "application/protobuf"):
        return Encoding.PROTOBUF
    if media_type == "application/json":
        return Encoding.JSON
    return None


def decompress(body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """Undoes Content-Encoding, refusing bodies that expand past max_bytes (zip bombs included)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, max_bytes + 1)
        except zlib.error as error:
            raise PayloadError(f"body is not valid {encoding}: {error}") from error
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise PayloadError(f"body is truncated {encoding}")
    else:
        raise PayloadError(f"unsupported Content-Encoding {content_encoding!r}; use gzip or none")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes")
    return data


def parse_request(data: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    return parse_message(data, encoding, ExportTraceServiceRequest(), "resourceSpans", "trace request")


MessageT = TypeVar("MessageT", bound=Message)


def parse_message(data: bytes, encoding: Encoding, message: MessageT, top_field: str, label: str) -> MessageT:
    """Parses an OTLP export request (traces, logs or metrics: `message` says which) into `message`."""
    what = type(message).__name__
    if encoding is Encoding.PROTOBUF:
        try:
            message.ParseFromString(data)
        except DecodeError as error:
            raise PayloadError(f"body is not a valid {what} protobuf: {error}") from error
        return message
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PayloadError(f"body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise PayloadError(f"body must be a JSON object with {top_field}")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, PayloadError, ValueError, TypeError, RecursionError) as error:
        raise PayloadError(f"body is not a valid OTLP JSON {label}: {error}") from error
    return message


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError as error:
                    raise PayloadError(f"{key} {value[:40]!r} is not hex") from error
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def encode_response(response: Message, encoding: Encoding) -> bytes:
    if encoding is Encoding.JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return bytes(response.SerializeToString())


def encode_status(code: int, message: str, encoding: Encoding) -> bytes:
    """A google.rpc.Status body, as OTLP/HTTP requires for every 4xx and 5xx response."""
    status = status_pb2.Status(code=code, message=message)
    if encoding is Encoding.JSON:
        return json.dumps({"code": code, "message": message}).encode()
    return bytes(status.SerializeToString())
