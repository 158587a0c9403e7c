"""Schemathesis, first shard of the operations (see openapi_properties.py); the second is test_openapi_2.py."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from tests.query_api.openapi_properties import OPERATIONS, SHARDS, check_operations


def test_every_operation_answers_only_documented_responses_and_never_500(client: Client) -> None:
    checked = check_operations(client, shard=0)
    assert len(checked) == len(range(0, OPERATIONS, SHARDS))
