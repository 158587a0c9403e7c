"""`python -m agentledger` and the `agentledger` command run the command line."""

import sys
from collections.abc import Callable

from agentledger.lean_process import import_without_unused_modules


def run() -> int:
    def load_main() -> Callable[[], int]:
        from agentledger.cli import main

        return main

    return import_without_unused_modules(load_main)()


if __name__ == "__main__":
    sys.exit(run())
