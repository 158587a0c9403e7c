"""The command line's entry keeps pandas and pydantic's plugins out of its process (agentledger/lean_process.py);
each check in a fresh interpreter, since the test process has both loaded."""

from __future__ import annotations

import os
import subprocess
import sys

_IMPORTS_OF_THE_ENTRY = (
    "import os, sys\n"
    "from agentledger.lean_process import import_without_unused_modules\n"
    "import_without_unused_modules(lambda: __import__('agentledger.cli'))\n"
    "import pyarrow as pa\n"
    "pa.array([1, 2]); pa.scalar(b'x')\n"
    "try:\n"
    "    import pandas\n"
    "    refused = False\n"
    "except ModuleNotFoundError:\n"
    "    refused = True\n"
    "import pydantic.plugin._loader as loader\n"
    "print(refused, 'pandas' in sys.modules, loader.get_plugins() == (), os.environ.get('PYDANTIC_DISABLE_PLUGINS'))\n"
)


def _run(script: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "PYDANTIC_DISABLE_PLUGINS"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                            env=environment)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pandas_is_refused_and_pydantic_plugins_stay_off() -> None:
    assert _run(_IMPORTS_OF_THE_ENTRY) == "True False True __all__"


def test_without_the_entry_pandas_and_the_plugins_load_where_installed() -> None:
    script = (
        "import sys\n"
        "import agentledger.cli\n"
        "import pydantic.plugin._loader as loader\n"
        "print('pandas' in sys.modules, loader.get_plugins() != ())\n"
    )

    assert _run(script) == "True True"


def test_the_command_runs_through_the_entry() -> None:
    result = subprocess.run([sys.executable, "-m", "agentledger", "--version"], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
