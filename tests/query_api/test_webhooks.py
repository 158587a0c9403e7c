"""Webhook payload parsing without storage: trailers, signatures, and what each delivery amounts to."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from agentledger.query_api.webhooks import (
    PayloadError,
    github_delivery,
    jira_delivery,
    run_id_in_text,
    signature_valid,
)
from tests.query_api.incidents import github_pull_request, jira_issue


@pytest.mark.parametrize(
    ("text", "run_id"),
    [
        ("Fix it\n\nAgent-Run-Id: run_1", "run_1"),
        ("Fix it\r\n\r\nagent-run-id:  run_2  \r\n", "run_2"),
        ("Agent-Run-Id: old\nAgent-Run-Id: new", "new"),
        ("Mentions Agent-Run-Id: inline only", ""),
        ("Agent-Run-Id:", ""),
        (None, ""),
    ],
)
def test_trailer(text: str | None, run_id: str) -> None:
    assert run_id_in_text(text) == run_id


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    # The example from GitHub's documentation on validating webhook deliveries.
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    assert hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() == expected.removeprefix("sha256=")
    assert signature_valid(secret, body, expected)
    assert not signature_valid(secret, body + b" ", expected)
    assert not signature_valid(secret, body, expected.removeprefix("sha256="))
    assert not signature_valid(secret, body, None)


def test_pull_request_actions_map_to_write_actions() -> None:
    actions = ("opened", "edited", "synchronize", "closed")
    writes = [github_delivery("pull_request", github_pull_request("r", action)).writes[0] for action in actions]

    assert [write.action for write in writes] == ["create", "update", "update", "merge"]
    assert github_delivery("pull_request", github_pull_request("r", "assigned")).detail == (
        "pull_request action 'assigned' writes nothing"
    )


def test_payload_that_is_not_an_object_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="the payload has no action"):
        github_delivery("pull_request", ["not", "an", "object"])
    with pytest.raises(PayloadError, match="the payload has no webhookEvent"):
        jira_delivery("text", "customfield_10100")


def test_jira_deleted_issue_is_a_delete() -> None:
    write = jira_delivery(jira_issue("r", event="jira:issue_deleted"), "customfield_10100").writes[0]

    assert (write.action, write.ref, write.occurred_ns) == ("delete", "OPS-17", 1_795_168_864_800_000_000)
