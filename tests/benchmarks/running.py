"""Runs a benchmark of benchmarks/ as the user would, in a subprocess from the checkout, at smoke size."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_benchmark(script: str, *arguments: str, timeout: float = 300) -> str:
    """The benchmark's standard output; fails the test, with everything it printed, if it exits non-zero."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *arguments],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{script} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout
