"""Keeps optional modules that agentledger never uses out of its command-line processes (`up` above all), where
they would only be resident memory: set up by the entry point before anything else is imported."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Final, TypeVar

T = TypeVar("T")

# pyarrow imports pandas, if it is installed, on the first pa.array or pa.scalar from Python values, only to ask
# whether the value is a pandas object (clickhouse-connect likewise); `up` never uses pandas. With the plugins
# below off, 42 MiB less is resident once the command line is imported (187 -> 145 MiB with the dev extras).
# Refused by an import finder, `import pandas` fails and both carry on without it (a None in sys.modules would
# not do: pyarrow's Cython import takes it for the module).
UNUSED_OPTIONAL_MODULES: Final = ("pandas",)
# pydantic loads every installed plugin (logfire's) when the first model class is built; agentledger's
# models need none. pydantic reads the variable whenever a model class is built (FastAPI builds some at run
# time), so it stays set for the process; Phoenix, started by `up` when configured, inherits it and uses none.
_PYDANTIC_PLUGINS_VARIABLE: Final = "PYDANTIC_DISABLE_PLUGINS"


def import_without_unused_modules(load: Callable[[], T]) -> T:
    """Runs `load` (the import of the command line) with the unused optional modules kept out and pydantic's
    plugins off, for the rest of the process."""
    if not any(isinstance(finder, _RefuseUnused) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefuseUnused())
    os.environ.setdefault(_PYDANTIC_PLUGINS_VARIABLE, "__all__")
    return load()


class _RefuseUnused:
    """An import finder that refuses UNUSED_OPTIONAL_MODULES and their submodules as not installed."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] in UNUSED_OPTIONAL_MODULES:
            raise ModuleNotFoundError(f"{name} is kept out of agentledger's processes", name=name)
        return None
