"""The CLI against a real query API with hostile run ids and names: URLs percent-encode every run id,
evidence is saved under a safe name in the current folder, and text output never passes a control
character (ANSI escapes, line breaks) from the record to the terminal."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from agentledger.cli import EXIT_FAILED, EXIT_OK, main
from agentledger.schema import conventions as conv
from agentledger.schema.run_ids import evidence_file_name
from tests.query_api.incidents import PrRun, ingest, pr_run_spans, record

# Clears the screen, prints a forged verdict in green, then a line that looks like another entry.
ANSI_NAME = "zz\x1b[2J\x1b[32mrun x: intact\x1b[0m\n2026-01-01T00:00:00Z  run  forged"


def _cli(capsys: pytest.CaptureFixture[str], served_api: httpx.Client, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--api-url", str(served_api.base_url).rstrip("/")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ingest_named(client: Client, run_id: str, agent_name: str) -> int:
    spans = pr_run_spans(PrRun(run_id))
    named = record(
        lambda tracer: tracer.start_span(
            agent_name,
            attributes={
                conv.AGENT_RUN_ID: run_id,
                conv.AGENTLEDGER_SPAN_TYPE: "run",
                conv.GEN_AI_AGENT_NAME: agent_name,
            },
        ).end()
    )
    ingest(client, spans + named)
    return len(spans) + 1


@pytest.mark.parametrize("run_id", ["a/b", "../x", "..", "ü-运行", "%2F", "nul\x00id", "line\nbreak"], ids=repr)
def test_timeline_verify_and_export_take_any_run_id(
    client: Client,
    served_api: httpx.Client,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_id: str,
) -> None:
    entries = _ingest_named(client, run_id, ANSI_NAME)
    monkeypatch.chdir(tmp_path)

    timeline = _cli(capsys, served_api, "timeline", run_id)
    verify = _cli(capsys, served_api, "verify", run_id)
    export = _cli(capsys, served_api, "export", run_id)

    assert timeline[0] == EXIT_OK, timeline
    lines = timeline[1].splitlines()
    assert len(lines) - lines.index("") - 1 == entries  # no value added a line
    shown = run_id.replace("\x00", "\\x00").replace("\n", "\\n")
    assert lines[0].startswith(f"run {shown}  agent zz\\x1b[2J\\x1b[32mrun x: intact\\x1b[0m\\n2026")
    assert "\x1b" not in timeline[1] and "\x00" not in timeline[1]
    assert verify[0] == EXIT_OK, verify
    assert verify[1].splitlines() == [f"run {shown}: intact (1 links, {entries} spans checked)"]
    assert export[0] == EXIT_OK, export
    assert [p.name for p in tmp_path.iterdir()] == [evidence_file_name(run_id)]


def test_an_over_long_run_id_is_a_sentence_and_exit_1(
    served_api: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, served_api, "timeline", "a" * 1025)

    assert (code, out) == (EXIT_FAILED, "")
    assert err == (
        "agentledger timeline: the query API answered 422: Value error, the run id is 1025 bytes of UTF-8;"
        " at most 1024 are allowed\n"
    )
