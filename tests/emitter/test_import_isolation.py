"""The emitter runs in an agent process that has none of the collector's dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("chdb", "clickhouse_connect", "pyarrow", "fastapi", "uvicorn", "agentledger.collector",
           "agentledger.ingest", "agentledger.query_api")  # fmt: skip

_PROGRAM = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError("blocked: " + name)
            return None

    sys.meta_path.insert(0, Block())

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentledger.emitter import agent_run, tool_call
    from agentledger.schema import conventions as conv

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with agent_run("a", run_id="run_iso", tracer_provider=provider):
        with tool_call("t", access=conv.ToolAccessValues.READ, arguments={{"x": 1}}):
            pass
    loaded = sorted(n for n in sys.modules if any(n == b or n.startswith(b + ".") for b in BLOCKED))
    print(len(exporter.get_finished_spans()), loaded)
    """
)


def test_emitter_imports_and_records_without_collector_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(blocked=BLOCKED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 []"


def test_the_blocker_really_blocks() -> None:
    program = _PROGRAM.format(blocked=BLOCKED).replace(
        "from agentledger.emitter", "import pyarrow\nfrom agentledger.emitter"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    assert "ImportError: blocked: pyarrow" in result.stderr
