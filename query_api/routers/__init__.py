"""HTTP routers, one per resource."""

# Registers the `text` path convertor, which routes compile against when their modules are imported.
from agentledger.query_api import paths as paths
