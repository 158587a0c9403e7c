"""ClickHouse access: clients, schema migrations and columnar inserts."""
