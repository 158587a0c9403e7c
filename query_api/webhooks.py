"""Turns GitHub and Jira webhook deliveries into downstream writes, and verifies their signatures.

The run id travels in the written object: an `Agent-Run-Id: <id>` trailer (PR body, commit message),
an `agent-run-id:<id>` label (GitHub) or a configured custom field (Jira). Objects without one were
not made by an agent we know of (a human's PR, say) and are counted as ignored, not stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agentledger.query_api.times import TimeFormatError, parse_rfc3339_ns
from agentledger.query_api.writes import NewWrite
from agentledger.schema.run_ids import run_id_problem

# A git trailer: on a line of its own; GitHub also renders PR bodies with \r\n. The value is the rest of
# the line, spaces inside included (a run id is any text; only a line break cannot be in a trailer).
_TRAILER: Final = re.compile(r"^[ \t]*Agent-Run-Id:[ \t]*(\S(?:[^\r\n]*\S)?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_LABEL_PREFIXES: Final = ("agent-run-id:", "agent-run:")

# GitHub pull_request actions that write something, and the write action they are.
_PR_ACTIONS: Final = {
    "opened": "create",
    "reopened": "update",
    "edited": "update",
    "synchronize": "update",
    "closed": "update",
    "labeled": "update",
    "unlabeled": "update",
    "ready_for_review": "update",
}
_JIRA_ACTIONS: Final = {"jira:issue_created": "create", "jira:issue_updated": "update", "jira:issue_deleted": "delete"}


class PayloadError(ValueError):
    """The delivery is not the webhook payload it claims to be; the message names the missing field."""


@dataclass(frozen=True)
class Delivery:
    """What one webhook delivery amounts to."""

    writes: list[NewWrite]
    ignored: int
    detail: str


def signature_valid(secret: str, body: bytes, header: str | None, prefix: str = "sha256=") -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant time."""
    if not header or not header.startswith(prefix):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len(prefix) :].strip().lower())


def run_id_in_text(text: str | None) -> str:
    """The last valid `Agent-Run-Id:` trailer in a PR body or commit message, or ''."""
    found = [str(value) for value in _TRAILER.findall(text or "") if run_id_problem(str(value)) is None]
    return found[-1] if found else ""


def _field(mapping: Any, *path: str, at: str = "") -> Any:
    """mapping[path[0]][path[1]]...; `at` names where mapping sits in the payload, for the message."""
    value = mapping
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise PayloadError(f"the payload has no {at}{'.'.join(path)}")
        value = value[key]
    return value


def _text(mapping: Any, *path: str, at: str = "") -> str:
    value = _field(mapping, *path, at=at)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise PayloadError(f"{at}{'.'.join(path)} must be a string")
    return str(value)


def _optional_text(mapping: Any, *path: str) -> str:
    try:
        return _text(mapping, *path)
    except PayloadError:
        return ""


def _time(text: str, where: str) -> int:
    try:
        return parse_rfc3339_ns(text)
    except TimeFormatError as error:
        raise PayloadError(f"{where}: {error}") from None


def github_delivery(event: str, payload: Any) -> Delivery:
    if event == "ping":
        return Delivery([], 0, "ping received")
    if event == "pull_request":
        return _github_pull_request(payload)
    if event == "push":
        return _github_push(payload)
    return Delivery([], 0, f"event {event!r} is not a write agentledger records (pull_request, push)")


def _github_pull_request(payload: Any) -> Delivery:
    action = _text(payload, "action")
    pull = _field(payload, "pull_request")
    repository = _text(payload, "repository", "full_name")
    if action not in _PR_ACTIONS:
        return Delivery([], 1, f"pull_request action {action!r} writes nothing")
    labels = pull.get("labels") if isinstance(pull, Mapping) else None
    run_id = run_id_in_text(_optional_text(pull, "body"))
    for label in labels if isinstance(labels, list) else []:
        name = label.get("name", "") if isinstance(label, Mapping) else ""
        for prefix in _LABEL_PREFIXES:
            value = name[len(prefix) :].strip() if isinstance(name, str) and name.lower().startswith(prefix) else ""
            if not run_id and value and run_id_problem(value) is None:
                run_id = value
    if not run_id:
        return Delivery([], 1, "the pull request carries no Agent-Run-Id trailer or agent-run-id label")
    write_action = _PR_ACTIONS[action]
    when = _text(pull, "updated_at", at="pull_request.")
    if action == "opened":
        when = _text(pull, "created_at", at="pull_request.")
    elif action == "closed":
        if pull.get("merged") is True and _optional_text(pull, "merged_at"):
            write_action, when = "merge", _text(pull, "merged_at", at="pull_request.")
        elif _optional_text(pull, "closed_at"):
            when = _text(pull, "closed_at", at="pull_request.")
    url = _text(pull, "html_url", at="pull_request.")
    write = NewWrite(
        run_id=run_id,
        system="github",
        ref=url,
        action=write_action,
        target=f"github:{repository}",
        occurred_ns=_time(when, "pull_request time"),
        source="github",
        title=_optional_text(pull, "title"),
        url=url,
        actor=_optional_text(pull, "user", "login") or _optional_text(payload, "sender", "login"),
        payload=json.dumps({"event": "pull_request", "action": action, "number": pull.get("number")}),
    )
    return Delivery([write], 0, f"pull request {url} recorded for run {run_id}")


def _github_push(payload: Any) -> Delivery:
    repository = _text(payload, "repository", "full_name")
    commits = _field(payload, "commits")
    if not isinstance(commits, list):
        raise PayloadError("commits must be a list")
    writes, ignored = [], 0
    for index, commit in enumerate(commits):
        at = f"commits[{index}]."
        message = _text(commit, "message", at=at)
        run_id = run_id_in_text(message)
        if not run_id:
            ignored += 1
            continue
        url = _text(commit, "url", at=at)
        writes.append(
            NewWrite(
                run_id=run_id,
                system="github",
                ref=url,
                action="create",
                target=f"github:{repository}",
                occurred_ns=_time(_text(commit, "timestamp", at=at), f"{at}timestamp"),
                source="github",
                title=message.splitlines()[0] if message else "",
                url=url,
                actor=_optional_text(commit, "author", "username") or _optional_text(commit, "author", "name"),
                payload=json.dumps({"event": "push", "ref": payload.get("ref"), "commit": commit.get("id")}),
            )
        )
    return Delivery(writes, ignored, f"{len(writes)} commit(s) recorded, {ignored} without an Agent-Run-Id trailer")


def _jira_run_id(fields: Mapping[str, Any], field_id: str) -> str:
    value = fields.get(field_id)
    if isinstance(value, Mapping):  # select-list custom fields hold {"value": ...}
        value = value.get("value")
    if isinstance(value, list) and value:
        value = value[0]
    return value.strip() if isinstance(value, str) and run_id_problem(value.strip()) is None else ""


def jira_delivery(payload: Any, run_id_field: str) -> Delivery:
    event = _text(payload, "webhookEvent")
    if event not in _JIRA_ACTIONS:
        return Delivery([], 0, f"event {event!r} is not a write agentledger records (issue created/updated/deleted)")
    issue = _field(payload, "issue")
    fields = _field(issue, "fields", at="issue.")
    if not isinstance(fields, Mapping):
        raise PayloadError("issue.fields must be an object")
    key = _text(issue, "key", at="issue.")
    run_id = _jira_run_id(fields, run_id_field)
    if not run_id:
        return Delivery([], 1, f"issue {key} has no run id in field {run_id_field}")
    timestamp = _field(payload, "timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp < 2**33 * 1000:
        raise PayloadError("timestamp must be Unix milliseconds")
    self_url = _optional_text(issue, "self")
    base = self_url.split("/rest/api/", 1)[0] if "/rest/api/" in self_url else ""
    project = _optional_text(fields, "project", "key") or key.rsplit("-", 1)[0]
    write = NewWrite(
        run_id=run_id,
        system="jira",
        ref=key,
        action=_JIRA_ACTIONS[event],
        target=f"jira:project/{project}",
        occurred_ns=timestamp * 1_000_000,
        source="jira",
        title=_optional_text(fields, "summary"),
        url=f"{base}/browse/{key}" if base else "",
        actor=_optional_text(payload, "user", "accountId") or _optional_text(payload, "user", "displayName"),
        payload=json.dumps({"event": event, "issue_id": issue.get("id"), "key": key}),
    )
    return Delivery([write], 0, f"issue {key} recorded for run {run_id}")
