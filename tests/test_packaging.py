"""The built wheel installs everything under the `agentledger` namespace and imports on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentledger.ingest.migrations import bundled_migrations
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so the checkout's build/ (which holds the editable install's link tree) is untouched.
    source = tmp_path_factory.mktemp("source") / "agentledger"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".agentledger"
    ))  # fmt: skip
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("agentledger-*.whl")
    return built


def test_wheel_has_only_the_agentledger_namespace_at_the_top(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}

    assert {t for t in top_level if not t.endswith(".dist-info")} == {"agentledger"}
    for expected in (
        "agentledger/schema/migrations/0001_initial.sql",
        "agentledger/schema/registry/run.yaml",
        "agentledger/schema/conventions.py",
        "agentledger/collector/receivers/otlp_http.py",
        "agentledger/query_api/routers/runs.py",
        "agentledger/collector/processors/normalize.py",
        "agentledger/emitter/spans.py",
        "agentledger/schema/CONTEXT_HASH.md",
        "agentledger/schema/AUDIT_CHAIN.md",
        "agentledger/schema/verify_bundle.py",  # evidence bundles ship it
        "agentledger/schema/migrations/0008_audit_chain_v2.sql",
        "agentledger/schema/migrations/0009_tool_catalogues.sql",
        "agentledger/query_api/store/runs.py",
        "agentledger/query_api/static/ui.html",
        "agentledger/py.typed",
    ):
        assert expected in names


def test_installed_wheel_imports_and_finds_its_migrations(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    script = (
        "import agentledger, agentledger.cli, agentledger.query_api.app, agentledger.collector.pipeline\n"
        "import agentledger.emitter\n"
        "from agentledger.ingest.migrations import bundled_migrations\n"
        "print(agentledger.__file__)\n"
        "print([m.name for m in bundled_migrations()])\n"
    )
    # The wheel's copy comes first on the path; dependencies come from this environment.
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )

    assert result.returncode == 0, result.stderr
    location, migrations = result.stdout.splitlines()
    assert Path(location).is_relative_to(target)
    assert migrations == repr([m.name for m in bundled_migrations()])
