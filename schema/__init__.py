"""agentledger's semantic conventions: the registry YAML, generated constants, and the ClickHouse DDL."""
