"""Which export failures are permanent (the data's fault: isolate and dead-letter), which are retryable, and
which mean the destination is down (retry without a cap): the one place exporters classify errors.

ClickHouse errors are classified by their server error code (clickhouse-connect's `Error.code`/`name`, or the
`Code: N` and `(NAME)` in the message), HTTP answers by status.
"""

from __future__ import annotations

import httpx
import pyarrow as pa
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    Error,
    OperationalError,
    error_name_from_body,
)

from agentledger.collector.component import ExportError, PermanentExportError
from agentledger.ingest.clickhouse import first_line

# Server error codes that refuse the data itself: the same rows are refused on every retry.
_PERMANENT_CODES = {
    6: "CANNOT_PARSE_TEXT",
    8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    33: "CANNOT_READ_ALL_DATA",
    36: "BAD_ARGUMENTS",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    131: "TOO_LARGE_STRING_SIZE",
    190: "SIZES_OF_ARRAYS_DONT_MATCH",
    469: "VIOLATED_CONSTRAINT",
}
_PERMANENT_NAME_PREFIXES = ("CANNOT_PARSE_", "ILLEGAL_")
# The server or its storage is unavailable or overloaded, whatever the data: retried without a cap, the
# spool holding the data meanwhile. A missing table or database is an outage (a restore or migration under
# way), not a property of the spans.
_DESTINATION_DOWN_CODES = {
    3: "UNEXPECTED_END_OF_FILE",
    60: "UNKNOWN_TABLE",
    81: "UNKNOWN_DATABASE",
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    236: "ABORTED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    285: "TOO_FEW_LIVE_REPLICAS",
    319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
    999: "KEEPER_EXCEPTION",
}
# Code 252 also refuses one insert block spanning too many partitions: the data's fault, not load.
_TOO_MANY_PARTITIONS = "too many partitions for single insert block"


def clickhouse_error_code(error: BaseException) -> tuple[int | None, str | None]:
    """The server's error code and name, from the exception's fields or its message."""
    code = getattr(error, "code", None) if isinstance(error, Error) else None
    name = getattr(error, "name", None) if isinstance(error, Error) else None
    text = str(error)
    if code is None:
        marker = text.find("Code: ")
        digits = text[marker + 6 :].split(".", 1)[0] if marker >= 0 else ""
        code = int(digits) if digits.isdigit() else None
    if name is None:
        name = error_name_from_body(text)
    return code, name


def classify_clickhouse(error: BaseException, context: str, stored_rows: pa.Array | None = None) -> ExportError:
    """The ExportError for a failed ClickHouse statement; `context` starts its message."""
    message = f"{context}: {first_line(error)}"
    if not isinstance(error, ClickHouseError) or isinstance(error, OperationalError):
        # OSError, connection refused or reset, HTTP transport errors: the server is not there.
        return ExportError(message, "unreachable", destination_down=True)
    code, name = clickhouse_error_code(error)
    if code is None and name is None:
        # A client-side error with no server code (e.g. a connection dropped mid-stream).
        return ExportError(message, "unreachable", destination_down=True)
    if code == 252 and _TOO_MANY_PARTITIONS in str(error).lower():
        return PermanentExportError(message, "TOO_MANY_PARTITIONS", stored_rows=stored_rows)
    label = name or _PERMANENT_CODES.get(code or -1) or _DESTINATION_DOWN_CODES.get(code or -1) or f"code_{code}"
    if code in _PERMANENT_CODES or label.startswith(_PERMANENT_NAME_PREFIXES):
        return PermanentExportError(message, label, stored_rows=stored_rows)
    if code in _DESTINATION_DOWN_CODES:
        return ExportError(message, label, destination_down=True)
    # MEMORY_LIMIT_EXCEEDED and codes not listed: may pass later or in a smaller batch; retried up to the cap.
    return ExportError(message, label)


def classify_http_status(status: int, message: str) -> ExportError:
    """4xx other than 408/429 refuse the request itself; 429, 502-504 and 408 say the server is busy or
    away; other 5xx may be the batch's fault (a server bug on some input), so they are retried up to the cap."""
    reason = f"http_{status}"
    if status in (408, 429, 502, 503, 504):
        return ExportError(message, reason, destination_down=True)
    if 400 <= status < 500:
        return PermanentExportError(message, reason)
    return ExportError(message, reason)


def classify_http_transport(error: httpx.HTTPError, message: str) -> ExportError:
    """No answer at all (refused, reset, timed out): the destination is down."""
    return ExportError(f"{message}: {error}", "unreachable", destination_down=True)
