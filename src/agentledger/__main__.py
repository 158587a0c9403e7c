"""`python -m agentledger` runs the command line."""

import sys

from agentledger.cli import main

sys.exit(main())
