"""benchmarks/normalize.py at smoke size: it builds its batch, normalizes it and prints its figure and what the
measured work produced (every span gets its trace's run id and its session's conversation, every LLM span its
model)."""

from __future__ import annotations

import re

from tests.benchmarks.running import run_benchmark


def test_the_normalize_benchmark_runs_at_smoke_size_and_normalizes_every_span() -> None:
    lines = run_benchmark("normalize.py", "--smoke").splitlines()

    assert len(lines) == 2, lines
    figure = re.fullmatch(r"normalize: 300 spans per batch, median of 2: ([0-9.]+) ms, ([0-9,]+) spans/s", lines[0])
    assert figure is not None, lines[0]
    assert float(figure[1]) > 0 and int(figure[2].replace(",", "")) > 0
    # A third of the spans are LLM spans (llm.model_name); all carry a session.id, their conversation.
    assert lines[1] == "normalized: 300 spans out, 300 with a run id, 300 with a conversation, 100 with a model"
