"""Schemathesis against the app's own OpenAPI document: no 500s, and every answer is a documented one.

Driven through Hypothesis directly (one property per operation) rather than schemathesis' pytest plugin,
which does not load under this pytest. The operations are checked in shards, one test file per shard, so
that the suite's workers share the ~80 s this takes (a test file runs on one worker).
"""

from __future__ import annotations

import pytest
import schemathesis
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from agentledger.query_api.app import QueryApiConfig, create_app
from tests.query_api.incidents import PrRun, ingest, pr_run_spans

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 100
OPERATIONS = 26  # + GET/PUT /v1/admin/tool-catalogue
SHARDS = 2


def check_operations(client: Client, shard: int) -> list[str]:
    """Checks every `SHARDS`-th operation of the document, starting at `shard`; returns their labels."""
    ingest(client, pr_run_spans(PrRun("run_pr")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(client, QueryApiConfig()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == OPERATIONS

    checked = []
    for operation in operations[shard::SHARDS]:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same examples in CI as here; other seeds were explored while writing it
            suppress_health_check=list(HealthCheck),
        )
        def property_holds(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            property_holds()
        except Exception as failure:
            pytest.fail(f"{operation.label}: {failure}")
        checked.append(operation.label)
    return checked
